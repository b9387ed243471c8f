package host

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
)

// Lock is the lock file's content: the SHA-256 of every plugin allowed to
// run, by absolute path. When a lock file exists, a plugin it does not
// list or whose file no longer has the pinned sum is refused before it
// runs (go-plugin's SecureConfig checks the sum of the file it starts).
type Lock struct {
	Version int               `json:"version"`
	Plugins map[string]string `json:"plugins"`
}

// ReadLock reads a lock file; a missing file gives ok false.
func ReadLock(path string) (l Lock, ok bool, err error) {
	if path == "" {
		return Lock{}, false, nil
	}
	data, err := readcap.File(path, 16<<20)
	if errors.Is(err, os.ErrNotExist) {
		return Lock{}, false, nil
	}
	if err != nil {
		return Lock{}, false, fmt.Errorf("plugin lock file: %w", err)
	}
	if err := json.Unmarshal(data, &l); err != nil || l.Version != 1 {
		return Lock{}, false, fmt.Errorf("plugin lock file %s: not a version 1 lock file (%v): %w", path, err, api.ErrCorrupt)
	}
	return l, true, nil
}

// WriteLock pins the plugins at paths: it writes their SHA-256 sums to
// the lock file at lockPath, atomically.
func WriteLock(lockPath string, paths []string) (Lock, error) {
	l := Lock{Version: 1, Plugins: map[string]string{}}
	for _, p := range paths {
		sum, err := Sum(p)
		if err != nil {
			return Lock{}, fmt.Errorf("plugin lock: %w", err)
		}
		l.Plugins[p] = sum
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return Lock{}, err
	}
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return Lock{}, fmt.Errorf("plugin lock: %w", err)
	}
	return l, atomicfile.WriteFile(lockPath, append(data, '\n'))
}

// lockedSum returns the sum the lock file pins for path: nil when there is
// no lock file, an error when there is one that does not list path.
func lockedSum(lockPath, path string) ([]byte, error) {
	l, ok, err := ReadLock(lockPath)
	if err != nil || !ok {
		return nil, err
	}
	s, listed := l.Plugins[path]
	if !listed {
		return nil, fmt.Errorf("plugin %s is not in the lock file %s (run densessm plugins lock to pin it): %w", path, lockPath, api.ErrConfig)
	}
	sum, err := hex.DecodeString(s)
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("plugin lock file %s: sum of %s is not a SHA-256: %w", lockPath, path, api.ErrCorrupt)
	}
	return sum, nil
}
