package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRandomParityTmp(t *testing.T) {
	data, err := os.ReadFile("/tmp/rnd/random.json")
	if err != nil {
		t.Skip()
	}
	var f struct {
		Cases map[string][]parityCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for name, cases := range f.Cases {
		tok, err := Load(filepath.Join("testdata", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for i, c := range cases {
			ids, _ := tok.Encode(c.Text)
			enc, _ := tok.EncodeFull(c.Text, false)
			d, _ := tok.Decode(c.IDs)
			d2, _ := tok.DecodeWith(c.IDs, false)
			if !slices.Equal(ids, c.IDs) || !slices.Equal(enc.IDs, c.IDsPlain) || !slices.Equal(enc.Offsets, c.Offsets) || d != c.Decoded || d2 != c.DecodedSpecial {
				bad++
				if bad <= 3 {
					t.Errorf("%s case %d %q:\nids %v\nwant %v\nplain %v\nwant %v\noff %v\nwant %v\ndec %q want %q\ndec2 %q want %q", name, i, c.Text, ids, c.IDs, enc.IDs, c.IDsPlain, enc.Offsets, c.Offsets, d, c.Decoded, d2, c.DecodedSpecial)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d/%d bad", name, bad, len(cases))
		}
	}
}
