// Package sysmem tells how much memory a process may still take: the
// system's available memory, bounded by the cgroup (container) limit, and
// parses sizes such as "8GiB" for flags that set a budget.
package sysmem

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Available returns the bytes of memory the process can still allocate
// before the system (or its container) runs out: MemAvailable of
// /proc/meminfo, lowered to the cgroup's limit minus its usage when a limit
// is set. ok is false where neither can be read (not Linux); callers then
// have no bound but the one they set themselves.
func Available() (bytes int64, ok bool) {
	bytes, ok = meminfoAvailable("/proc/meminfo")
	if limit, used, found := cgroupLimit(); found {
		left := max(limit-used, 0)
		if !ok || left < bytes {
			bytes, ok = left, true
		}
	}
	return bytes, ok
}

// meminfoAvailable reads MemAvailable (in kB) from a meminfo file.
func meminfoAvailable(path string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb < 0 {
				return 0, false
			}
			return kb * 1024, true
		}
	}
	return 0, false
}

// cgroupLimit returns the memory limit and usage of the process's cgroup
// (v2, then v1), when a limit is set.
func cgroupLimit() (limit, used int64, ok bool) {
	for _, p := range [][2]string{
		{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
		{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"},
	} {
		limit, err := readInt(p[0])
		if err != nil || limit <= 0 || limit >= 1<<60 { // "max", or v1's "no limit"
			continue
		}
		used, err := readInt(p[1])
		if err != nil {
			continue
		}
		return limit, used, true
	}
	return 0, 0, false
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// ParseSize reads a size in bytes: a number with an optional unit, B, KB,
// MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024),
// case-insensitive ("512MiB", "8GB", "1.5GiB", "1000000").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || !(v >= 0) {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (KB, MB, GB, KiB, MiB, GiB)", s)
	}
	b := v * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}

// Format writes bytes with a binary unit ("1.5 GiB").
func Format(bytes int64) string {
	const unit = 1024
	if bytes < unit {
		return fmt.Sprintf("%d B", bytes)
	}
	v, exp := float64(bytes), 0
	for v >= unit && exp < 6 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp-1])
}
