package provenance

import "testing"

// Outside a checkout the recipe is named by its file name alone, so the
// statement is the same in any folder on any machine.
func TestRelOutsideCheckout(t *testing.T) {
	var none *Source
	for _, tc := range []struct {
		src  *Source
		path string
		want string
	}{
		{none, "/home/alice/images/recipe.yaml", "recipe.yaml"},
		{&Source{}, "recipes/web.yaml", "web.yaml"},
		{&Source{Root: "/src/repo"}, "/src/repo/recipes/web.yaml", "recipes/web.yaml"},
		{&Source{Root: "/src/repo"}, "/elsewhere/web.yaml", "web.yaml"},
	} {
		if got := tc.src.Rel(tc.path); got != tc.want {
			t.Errorf("Rel(%s) with %+v = %s, want %s", tc.path, tc.src, got, tc.want)
		}
	}
}
