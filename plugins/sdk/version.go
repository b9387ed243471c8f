package sdk

import "runtime/debug"

// moduleVersion returns the version of the densessm module this binary was
// built with ("(devel)" in a checkout).
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == "github.com/densessm/densessm" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/densessm/densessm" {
			if d.Replace != nil {
				return d.Version + " (replaced by " + d.Replace.Path + ")"
			}
			return d.Version
		}
	}
	return "unknown"
}
