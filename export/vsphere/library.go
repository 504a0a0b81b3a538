package vsphere

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

// uploadToLibrary puts the OVF and its VMDK into a content library item
// named after the template (a new version if the item exists). A failure
// fails the update session, so the item keeps its previous version.
func uploadToLibrary(ctx context.Context, vc *vim25.Client, user *url.Userinfo, cfg Config, ovfText, vmdkPath string) (string, error) {
	rc := rest.NewClient(vc)
	if err := rc.Login(ctx, user); err != nil {
		return "", fmt.Errorf("vsphere: content library: logging in: %w", err)
	}
	defer rc.Logout(context.Background())
	m := library.NewManager(rc)
	lib, err := m.GetLibraryByName(ctx, cfg.ContentLibrary)
	if err != nil {
		return "", fmt.Errorf("vsphere: content library %q: %w", cfg.ContentLibrary, err)
	}
	ids, err := m.FindLibraryItems(ctx, library.FindItem{LibraryID: lib.ID, Name: cfg.TemplateName})
	if err != nil {
		return "", fmt.Errorf("vsphere: content library %q: %w", cfg.ContentLibrary, err)
	}
	var itemID string
	if len(ids) > 0 {
		itemID = ids[0]
	} else if itemID, err = m.CreateLibraryItem(ctx, library.Item{Name: cfg.TemplateName, Type: "ovf", LibraryID: lib.ID,
		Description: &cfg.Annotation}); err != nil {
		return "", fmt.Errorf("vsphere: content library %q: creating item %s: %w", cfg.ContentLibrary, cfg.TemplateName, err)
	}
	session, err := m.CreateLibraryItemUpdateSession(ctx, library.Session{LibraryItemID: itemID})
	if err != nil {
		return "", fmt.Errorf("vsphere: content library item %s: update session: %w", itemID, err)
	}
	fail := func(err error) (string, error) {
		m.FailLibraryItemUpdateSession(context.Background(), session)
		m.DeleteLibraryItemUpdateSession(context.Background(), session)
		return "", err
	}
	upload := func(name string, r io.Reader, size int64) error {
		f, err := m.AddLibraryItemFile(ctx, session, library.UpdateFile{Name: name, SourceType: "PUSH", Size: size})
		if err != nil {
			return err
		}
		u, err := url.Parse(f.UploadEndpoint.URI)
		if err != nil {
			return err
		}
		p := soap.DefaultUpload
		p.ContentLength = size
		// The vAPI session authorizes the upload endpoint.
		return rc.Upload(ctx, r, u, &p)
	}
	ovfName := cfg.TemplateName + ".ovf"
	if err := upload(ovfName, strings.NewReader(ovfText), int64(len(ovfText))); err != nil {
		return fail(fmt.Errorf("vsphere: content library: uploading %s: %w", ovfName, err))
	}
	vf, err := os.Open(vmdkPath)
	if err != nil {
		return fail(err)
	}
	defer vf.Close()
	fi, err := vf.Stat()
	if err != nil {
		return fail(err)
	}
	if err := upload(filepath.Base(vmdkPath), vf, fi.Size()); err != nil {
		return fail(fmt.Errorf("vsphere: content library: uploading %s: %w", filepath.Base(vmdkPath), err))
	}
	if err := m.CompleteLibraryItemUpdateSession(ctx, session); err != nil {
		return fail(fmt.Errorf("vsphere: content library: completing the update: %w", err))
	}
	if err := m.WaitOnLibraryItemUpdateSession(ctx, session, 0, nil); err != nil {
		return fail(fmt.Errorf("vsphere: content library: waiting for the update: %w", err))
	}
	return itemID, nil
}
