package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/readcap"
)

// resolve turns one spec into the files it names, in order.
func resolve(spec string, exts []string) ([]candidate, error) {
	if spec == "" {
		return nil, fmt.Errorf("an empty path: %w", api.ErrConfig)
	}
	st, err := os.Stat(spec)
	switch {
	case err == nil && st.IsDir():
		return walkFolder(spec, exts)
	case err == nil:
		return []candidate{{path: spec}}, nil
	case hasMeta(spec):
		return glob(spec, exts)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file or folder: %w", spec, api.ErrNotFound)
	default:
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
}

// walkFolder lists the files under root in lexical order: not hidden, with
// one of exts when it is set; a save_to_disk folder gives its data files.
// Symbolic links to files are followed, links to folders are not.
func walkFolder(root string, exts []string) ([]candidate, error) {
	if _, err := os.Stat(filepath.Join(root, "dataset_dict.json")); err == nil {
		return nil, fmt.Errorf("%s is a Hugging Face DatasetDict folder: name one of its split folders: %w", root, api.ErrConfig)
	}
	walkRoot := root
	if lst, err := os.Lstat(root); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
		walkRoot = root + string(filepath.Separator) // lstat follows a link given with a trailing slash
	}
	var out []candidate
	err := filepath.WalkDir(walkRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != walkRoot && hidden(d.Name()) {
				return filepath.SkipDir
			}
			files, ok, err := savedDataset(path)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			for _, f := range files {
				if hasExt(f, exts) {
					out = append(out, candidate{path: f})
				}
			}
			return filepath.SkipDir
		}
		if hidden(d.Name()) || !hasExt(d.Name(), exts) || !isFile(path, d) {
			return nil
		}
		out = append(out, candidate{path: path, found: true})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// isFile reports whether a walked entry is a regular file or a link to one.
func isFile(path string, d fs.DirEntry) bool {
	if d.Type().IsRegular() {
		return true
	}
	if d.Type()&fs.ModeSymlink == 0 {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// savedState is the part of the state.json of datasets' save_to_disk that
// lists the data files.
type savedState struct {
	DataFiles []struct {
		Filename string `json:"filename"`
	} `json:"_data_files"`
}

// savedDataset returns the data files a save_to_disk folder lists in its
// state.json; ok is false when dir is not such a folder.
func savedDataset(dir string) (files []string, ok bool, err error) {
	path := filepath.Join(dir, "state.json")
	if _, err := os.Stat(path); err != nil {
		return nil, false, nil
	}
	raw, err := readcap.File(path, 16<<20)
	if err != nil {
		return nil, false, err
	}
	var st savedState
	if json.Unmarshal(raw, &st) != nil || len(st.DataFiles) == 0 {
		return nil, false, nil // some other tool's state.json
	}
	for _, f := range st.DataFiles {
		name := f.Filename
		if name == "" || name != filepath.Base(name) || hidden(name) {
			return nil, false, fmt.Errorf("%s: data file name %q is not a plain file name: %w", path, name, api.ErrCorrupt)
		}
		files = append(files, filepath.Join(dir, name))
	}
	return files, true, nil
}

// hasMeta reports whether s holds a glob character.
func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// glob lists the files that pattern matches, in lexical order. Folders it
// matches are walked like folder specs.
func glob(pattern string, exts []string) ([]candidate, error) {
	abs := strings.HasPrefix(pattern, "/")
	var elems []string
	for _, e := range strings.Split(pattern, "/") {
		if e != "" && e != "." {
			elems = append(elems, e)
		}
	}
	lit := 0
	for lit < len(elems) && !hasMeta(elems[lit]) {
		lit++
	}
	base := filepath.Join(elems[:lit]...)
	switch {
	case abs:
		base = "/" + base
	case base == "":
		base = "."
	}
	pat := elems[lit:]
	for _, p := range pat {
		if p == "**" {
			continue
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("%s: bad pattern %q: %w", pattern, p, api.ErrConfig)
		}
	}
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: no match (%s is not a folder): %w", pattern, base, api.ErrNotFound)
	}
	var out []candidate
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == base {
			return nil
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		name := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() {
			if matchPath(pat, name, false) {
				files, err := walkFolder(path, exts)
				if err != nil {
					return err
				}
				out = append(out, files...)
				return filepath.SkipDir
			}
			if !matchPath(pat, name, true) {
				return filepath.SkipDir
			}
			return nil
		}
		if matchPath(pat, name, false) && hasExt(d.Name(), exts) && isFile(path, d) {
			out = append(out, candidate{path: path, found: true})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pattern, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no match: %w", pattern, api.ErrNotFound)
	}
	return out, nil
}

// matchPath reports whether the path elements name match the pattern
// elements pat, or, with prefix, whether name is a folder under which a
// match may lie. A ** element matches any number of elements that are not
// hidden.
func matchPath(pat, name []string, prefix bool) bool {
	if len(name) == 0 {
		if prefix {
			return len(pat) > 0
		}
		for _, p := range pat {
			if p != "**" {
				return false
			}
		}
		return true
	}
	if len(pat) == 0 {
		return false
	}
	if pat[0] == "**" {
		if matchPath(pat[1:], name, prefix) {
			return true
		}
		return !hidden(name[0]) && matchPath(pat, name[1:], prefix)
	}
	return matchElem(pat[0], name[0]) && matchPath(pat[1:], name[1:], prefix)
}

// matchElem matches one path element; a hidden name matches only a pattern
// that starts with a dot.
func matchElem(pat, name string) bool {
	if hidden(name) && !strings.HasPrefix(pat, ".") {
		return false
	}
	ok, _ := filepath.Match(pat, name)
	return ok
}
