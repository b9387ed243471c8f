package arrowcheck

import (
	"encoding/binary"
	"fmt"

	"github.com/densessm/densessm/api"
)

// This file checks the flatbuffer metadata of Arrow IPC messages (the
// Message, Schema and RecordBatch tables of Arrow's format/Message.fbs and
// format/Schema.fbs) before arrow-go reads it: every table, vtable, vector
// and string the reader follows must lie inside the buffer, nesting is
// bounded, and so is the number of tables visited (a buffer of n bytes holds
// at most n/4 tables; more visits means shared or cyclic offsets).

// maxFieldDepth bounds the nesting of schema fields.
const maxFieldDepth = 64

// Slots (field indices) of the tables read, from Arrow's .fbs files.
const (
	msgHeaderType, msgHeader, msgBodyLength, msgCustomMetadata = 1, 2, 3, 4
	schemaFields, schemaCustomMetadata, schemaFeatures         = 1, 2, 3
	fieldName, fieldTypeType, fieldType, fieldDictionary       = 0, 2, 3, 4
	fieldChildren, fieldCustomMetadata                         = 5, 6
	dictIndexType                                              = 1
	kvKey, kvValue                                             = 0, 1
	batchNodes, batchBuffers, batchCompression, batchVariadic  = 1, 2, 3, 4
	dictBatchData                                              = 1
	timestampTimezone                                          = 1
	unionTypeIDs                                               = 1
)

// Message header and type union tags.
const (
	headerSchema, headerDictionaryBatch, headerRecordBatch = 1, 2, 3
	typeTimestamp, typeUnion                               = 10, 14
)

// messageInfo is what checkMessage learns about a message.
type messageInfo struct {
	bodyLen    int64
	buffers    [][2]int64 // offset and length of each body buffer of a record batch
	compressed bool
}

// fbCheck walks one flatbuffer.
type fbCheck struct {
	buf    []byte
	visits int
}

// fbTable is a table whose vtable has been checked.
type fbTable struct {
	c      *fbCheck
	pos    int
	vt     int
	vtSize int
	size   int
}

func corruptMeta(format string, args ...any) error {
	return fmt.Errorf("arrow: message metadata: %s: %w", fmt.Sprintf(format, args...), api.ErrCorrupt)
}

// u32 reads the uint32 at pos.
func (c *fbCheck) u32(pos int) (uint32, error) {
	if pos < 0 || pos > len(c.buf)-4 {
		return 0, corruptMeta("offset %d outside %d bytes", pos, len(c.buf))
	}
	return binary.LittleEndian.Uint32(c.buf[pos:]), nil
}

// table checks the table at pos and its vtable.
func (c *fbCheck) table(pos int) (fbTable, error) {
	c.visits++
	if c.visits > len(c.buf)/4+1 {
		return fbTable{}, corruptMeta("more tables than the buffer can hold")
	}
	so, err := c.u32(pos)
	if err != nil {
		return fbTable{}, err
	}
	vt := pos - int(int32(so))
	if vt < 0 || vt > len(c.buf)-4 {
		return fbTable{}, corruptMeta("vtable at %d outside %d bytes", vt, len(c.buf))
	}
	vtSize := int(binary.LittleEndian.Uint16(c.buf[vt:]))
	size := int(binary.LittleEndian.Uint16(c.buf[vt+2:]))
	if vtSize < 4 || vtSize%2 != 0 || vt+vtSize > len(c.buf) || size < 4 || pos+size > len(c.buf) {
		return fbTable{}, corruptMeta("table at %d: vtable of %d bytes, object of %d", pos, vtSize, size)
	}
	t := fbTable{c: c, pos: pos, vt: vt, vtSize: vtSize, size: size}
	for f := 0; 4+2*f < vtSize; f++ {
		if off := int(binary.LittleEndian.Uint16(c.buf[vt+4+2*f:])); off != 0 && (off < 4 || off >= size) {
			return fbTable{}, corruptMeta("table at %d: field %d at %d outside its %d bytes", pos, f, off, size)
		}
	}
	return t, nil
}

// field returns the position of a field, or 0 when it is absent.
func (t fbTable) field(slot int) int {
	o := 4 + 2*slot
	if o >= t.vtSize {
		return 0
	}
	off := int(binary.LittleEndian.Uint16(t.c.buf[t.vt+o:]))
	if off == 0 {
		return 0
	}
	return t.pos + off
}

// scalar reads an unsigned little-endian field of size bytes (0 if absent).
func (t fbTable) scalar(slot, size int) (uint64, error) {
	p := t.field(slot)
	if p == 0 {
		return 0, nil
	}
	if p+size > len(t.c.buf) {
		return 0, corruptMeta("field %d of the table at %d runs past the buffer", slot, t.pos)
	}
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(t.c.buf[p+i])
	}
	return v, nil
}

// target follows the offset stored in a field; ok is false when absent.
func (t fbTable) target(slot int) (pos int, ok bool, err error) {
	p := t.field(slot)
	if p == 0 {
		return 0, false, nil
	}
	off, err := t.c.u32(p)
	if err != nil {
		return 0, false, err
	}
	pos = p + int(off)
	if pos >= len(t.c.buf) || pos < p {
		return 0, false, corruptMeta("field %d of the table at %d points outside the buffer", slot, t.pos)
	}
	return pos, true, nil
}

// sub checks the table a field points to; ok is false when absent.
func (t fbTable) sub(slot int) (fbTable, bool, error) {
	pos, ok, err := t.target(slot)
	if !ok || err != nil {
		return fbTable{}, false, err
	}
	s, err := t.c.table(pos)
	return s, err == nil, err
}

// vector checks the vector a field points to (elements of elem bytes) and
// returns the position of its first element and its length.
func (t fbTable) vector(slot, elem int) (start, n int, err error) {
	pos, ok, err := t.target(slot)
	if !ok || err != nil {
		return 0, 0, err
	}
	l, err := t.c.u32(pos)
	if err != nil {
		return 0, 0, err
	}
	if int64(l)*int64(elem) > int64(len(t.c.buf)-pos-4) {
		return 0, 0, corruptMeta("vector of %d elements at %d runs past the buffer", l, pos)
	}
	return pos + 4, int(l), nil
}

// tables checks a vector of tables with check.
func (t fbTable) tables(slot int, check func(fbTable) error) error {
	start, n, err := t.vector(slot, 4)
	if err != nil {
		return err
	}
	for i := range n {
		p := start + 4*i
		off, _ := t.c.u32(p)
		s, err := t.c.table(p + int(off))
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return err
		}
	}
	return nil
}

// str checks a string field.
func (t fbTable) str(slot int) error {
	_, _, err := t.vector(slot, 1)
	return err
}

// checkMessage checks the metadata of one IPC message.
func checkMessage(meta []byte) (info messageInfo, err error) {
	c := &fbCheck{buf: meta}
	root, err := c.u32(0)
	if err != nil {
		return info, err
	}
	m, err := c.table(int(root))
	if err != nil {
		return info, err
	}
	if err := m.tables(msgCustomMetadata, checkKeyValue); err != nil {
		return info, err
	}
	body, err := m.scalar(msgBodyLength, 8)
	if err != nil {
		return info, err
	}
	if int64(body) < 0 {
		return info, corruptMeta("body length %d", int64(body))
	}
	info.bodyLen = int64(body)
	kind, err := m.scalar(msgHeaderType, 1)
	if err != nil {
		return info, err
	}
	h, ok, err := m.sub(msgHeader)
	if err != nil {
		return info, err
	}
	if !ok {
		return info, corruptMeta("no header")
	}
	switch kind {
	case headerSchema:
		err = checkSchema(h)
	case headerRecordBatch:
		err = checkRecordBatch(h, &info)
	case headerDictionaryBatch:
		var data fbTable
		if data, ok, err = h.sub(dictBatchData); err == nil && ok {
			err = checkRecordBatch(data, &info)
		}
	default:
		err = fmt.Errorf("arrow: message of kind %d (not a schema, record batch or dictionary): %w", kind, api.ErrUnsupported)
	}
	return info, err
}

func checkKeyValue(kv fbTable) error {
	if err := kv.str(kvKey); err != nil {
		return err
	}
	return kv.str(kvValue)
}

func checkSchema(s fbTable) error {
	if err := s.tables(schemaFields, func(f fbTable) error { return checkField(f, 1) }); err != nil {
		return err
	}
	if err := s.tables(schemaCustomMetadata, checkKeyValue); err != nil {
		return err
	}
	_, _, err := s.vector(schemaFeatures, 8)
	return err
}

func checkField(f fbTable, depth int) error {
	if depth > maxFieldDepth {
		return corruptMeta("fields nested more than %d deep", maxFieldDepth)
	}
	if err := f.str(fieldName); err != nil {
		return err
	}
	kind, err := f.scalar(fieldTypeType, 1)
	if err != nil {
		return err
	}
	if typ, ok, err := f.sub(fieldType); err != nil {
		return err
	} else if ok {
		switch kind {
		case typeTimestamp:
			err = typ.str(timestampTimezone)
		case typeUnion:
			_, _, err = typ.vector(unionTypeIDs, 4)
		}
		if err != nil {
			return err
		}
	}
	if dict, ok, err := f.sub(fieldDictionary); err != nil {
		return err
	} else if ok {
		if _, _, err := dict.sub(dictIndexType); err != nil {
			return err
		}
	}
	if err := f.tables(fieldChildren, func(c fbTable) error { return checkField(c, depth+1) }); err != nil {
		return err
	}
	return f.tables(fieldCustomMetadata, checkKeyValue)
}

func checkRecordBatch(b fbTable, info *messageInfo) error {
	if _, _, err := b.vector(batchNodes, 16); err != nil {
		return err
	}
	start, n, err := b.vector(batchBuffers, 16)
	if err != nil {
		return err
	}
	info.buffers = make([][2]int64, n)
	for i := range info.buffers {
		p := start + 16*i
		info.buffers[i] = [2]int64{int64(binary.LittleEndian.Uint64(b.c.buf[p:])), int64(binary.LittleEndian.Uint64(b.c.buf[p+8:]))}
	}
	_, info.compressed, err = b.sub(batchCompression)
	if err != nil {
		return err
	}
	start, nv, err := b.vector(batchVariadic, 8)
	if err != nil {
		return err
	}
	for i := range nv {
		if v := int64(binary.LittleEndian.Uint64(b.c.buf[start+8*i:])); v < 0 || v > int64(n) {
			return corruptMeta("variadic buffer count %d with %d buffers", v, n)
		}
	}
	return nil
}
