package export_test

import (
	"reflect"
	"testing"

	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/export/vsphere"
	"github.com/layerimg/layerimg/recipes"
)

// Every setting a recipe's publish section holds reaches the publisher's
// config: a field added to a recipe type and not mapped fails here.
func TestFromRecipeMapsEveryField(t *testing.T) {
	check(t, func(a *recipes.AWS) any { return aws.FromRecipe(a) })
	check(t, func(a *recipes.Azure) any { return azure.FromRecipe(a) })
	check(t, func(v *recipes.VSphere) any { return vsphere.FromRecipe(v) })
}

func check[T any](t *testing.T, from func(*T) any) {
	t.Helper()
	zero := from(new(T))
	typ := reflect.TypeFor[T]()
	for i := range typ.NumField() {
		src := new(T)
		setNonZero(reflect.ValueOf(src).Elem().Field(i))
		if reflect.DeepEqual(from(src), zero) {
			t.Errorf("%s.%s does not reach the publisher's config", typ.Name(), typ.Field(i).Name)
		}
	}
}

// setNonZero gives v a value, filling nested structs (a gallery, launch
// permissions) in every field so that each of theirs must be mapped too.
func setNonZero(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		setNonZero(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		setNonZero(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			setNonZero(v.Field(i))
		}
	}
}
