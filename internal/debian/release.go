package debian

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// IndexFile is one file a Release lists: its size and SHA256.
type IndexFile struct {
	Size   int64
	SHA256 string
}

// Release is a parsed (In)Release: its fields and the SHA256 list.
type Release struct {
	Fields Paragraph
	Files  map[string]IndexFile
	// Signed is the key that signed it, when checked against a keyring.
	Signer string
}

// ParseInRelease reads a clearsigned InRelease. With a keyring, its
// signature must be by one of the keyring's keys; without one, only its
// content is read (and Signer stays empty).
func ParseInRelease(data []byte, keyring openpgp.EntityList) (*Release, error) {
	body := data
	signer := ""
	if b, _ := clearsign.Decode(data); b != nil {
		body = b.Plaintext
		if keyring != nil {
			e, err := openpgp.CheckDetachedSignature(keyring, bytes.NewReader(b.Bytes), b.ArmoredSignature.Body, nil)
			if err != nil {
				return nil, fmt.Errorf("InRelease signature: %w", err)
			}
			signer = fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
			for n := range e.Identities {
				signer = n + " (" + signer + ")"
				break
			}
		}
	} else if keyring != nil {
		return nil, errors.New("InRelease is not signed")
	}
	rel := &Release{Files: map[string]IndexFile{}, Signer: signer}
	err := EachParagraph(bytes.NewReader(body), func(p Paragraph) error {
		if rel.Fields == nil {
			rel.Fields = p
		}
		return nil
	})
	if err != nil || rel.Fields == nil {
		return nil, fmt.Errorf("InRelease: no fields (%v)", err)
	}
	for _, line := range strings.Split(rel.Fields["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("InRelease: SHA256 line %q: %w", line, err)
		}
		rel.Files[f[2]] = IndexFile{Size: size, SHA256: f[0]}
	}
	return rel, nil
}

// Check verifies data is the file name the Release lists.
func (r *Release) Check(name string, data []byte) error {
	f, ok := r.Files[name]
	if !ok {
		return fmt.Errorf("%s is not listed in InRelease", name)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%s: %d bytes with sha256 %x; InRelease lists %d bytes with sha256 %s", name, len(data), sum, f.Size, f.SHA256)
	}
	return nil
}

// ReadKeyring reads an OpenPGP keyring, binary (.gpg) or armored (.asc).
func ReadKeyring(paths ...string) (openpgp.EntityList, error) {
	var all openpgp.EntityList
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var el openpgp.EntityList
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
			el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		} else {
			el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
		}
		if err != nil {
			return nil, fmt.Errorf("keyring %s: %w", p, err)
		}
		all = append(all, el...)
	}
	return all, nil
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyList is a set of OpenPGP keys, as ReadKeyring returns.
type KeyList = openpgp.EntityList

// CheckFor refuses a Release that is not suite's (a validly signed
// InRelease of another suite, served in its place, would hide that
// suite's updates) or whose Valid-Until has passed (a replayed old one),
// as apt does. A snapshot is old on purpose: its Valid-Until is ignored.
func (r *Release) CheckFor(suite string, snapshot bool, now time.Time) error {
	if s, c := r.Fields["Suite"], r.Fields["Codename"]; s != suite && c != suite {
		return fmt.Errorf("it is the Release of suite %q (codename %q), not of %s", s, c, suite)
	}
	vu := r.Fields["Valid-Until"]
	if vu == "" || snapshot {
		return nil
	}
	until, err := time.Parse(time.RFC1123, vu)
	if err != nil {
		if until, err = time.Parse(time.RFC1123Z, vu); err != nil {
			return fmt.Errorf("Valid-Until %q: %w", vu, err)
		}
	}
	if now.After(until) {
		return fmt.Errorf("it expired on %s (Valid-Until): the mirror serves an old copy", vu)
	}
	return nil
}
