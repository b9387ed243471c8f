package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
)

// This file is a restricted unpickler for the data.pkl record of a PyTorch
// zip checkpoint. It interprets the pickle opcodes as a small stack machine
// over plain Go values and never runs code: the only globals it accepts are
// the few that rebuild tensors and ordered dicts (allowedGlobals), each
// "call" of one (REDUCE) is carried out by Go code here, and any other
// global is refused when its opcode is read, before anything else happens.
//
// Values on the machine's stack are:
//
//	nil                 None
//	bool, int64, float64, string
//	pyTuple             a tuple
//	*pyList, *pyDict    a list; a dict or collections.OrderedDict
//	pyGlobal            an allowed global (a callable or a storage type)
//	*pyStorage          a tensor storage (from a persistent id)
//	*pyTensor           a rebuilt tensor (a view of a storage)
//
// Every allocation is bounded by the bytes the opcodes occupy: strings by
// their length, checked against what is left of the input; containers by
// the number of stack items they take; the memo is a map, so a large memo
// index costs nothing.

// Pickle opcodes handled here: those torch.save emits (protocol 2), plus the
// few protocol 4 ones (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL) that
// torch.save(..., pickle_protocol=4) adds, and the simple container and
// scalar opcodes.
const (
	opMark            = '('
	opStop            = '.'
	opPop             = '0'
	opPopMark         = '1'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opNone            = 'N'
	opBinPersID       = 'Q'
	opReduce          = 'R'
	opBinUnicode      = 'X'
	opAppend          = 'a'
	opBuild           = 'b'
	opGlobal          = 'c'
	opDict            = 'd'
	opEmptyDict       = '}'
	opAppends         = 'e'
	opBinGet          = 'h'
	opLongBinGet      = 'j'
	opList            = 'l'
	opEmptyList       = ']'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opSetItem         = 's'
	opTuple           = 't'
	opEmptyTuple      = ')'
	opSetItems        = 'u'
	opBinFloat        = 'G'
	opProto           = 0x80
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opShortBinUnicode = 0x8c
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
)

// maxPickleProtocol is the highest pickle protocol accepted (PROTO operand).
const maxPickleProtocol = 5

// pyTuple is a Python tuple.
type pyTuple []any

// pyList is a Python list.
type pyList struct{ items []any }

// pyDict is a Python dict or collections.OrderedDict: insertion-ordered,
// with string or integer keys (all a state_dict needs).
type pyDict struct {
	keys  []any
	vals  []any
	index map[any]int
}

// set adds a key; a repeated key is an error (pickle never writes one).
func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64:
	default:
		return fmt.Errorf("dict key that is %s: %w", describe(k), api.ErrUnsupported)
	}
	if d.index == nil {
		d.index = map[any]int{}
	}
	if _, dup := d.index[k]; dup {
		return fmt.Errorf("dict key %s appears twice: %w", keyText(k), api.ErrCorrupt)
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// callable names the allowed globals that REDUCE may apply.
type callable uint8

const (
	notCallable callable = iota // a storage type: only valid in a persistent id
	callOrderedDict
	callRebuildTensor
	callRebuildTensorV2
	callRebuildParameter
)

// pyGlobal is an allowed global: a callable, or a storage type and the
// dtype of its elements.
type pyGlobal struct {
	name  string // module.name, for messages
	call  callable
	dtype api.DType
}

// globalKey is the (module, name) pair a GLOBAL or STACK_GLOBAL names.
type globalKey struct{ module, name string }

// allowedGlobals is the complete list of globals a checkpoint may name.
// Storage types of element types densessm has no dtype for (ShortStorage,
// the complex and quantised ones) are absent, and so refused.
var allowedGlobals = map[globalKey]pyGlobal{
	{"collections", "OrderedDict"}:         {name: "collections.OrderedDict", call: callOrderedDict},
	{"torch._utils", "_rebuild_tensor"}:    {name: "torch._utils._rebuild_tensor", call: callRebuildTensor},
	{"torch._utils", "_rebuild_tensor_v2"}: {name: "torch._utils._rebuild_tensor_v2", call: callRebuildTensorV2},
	{"torch._utils", "_rebuild_parameter"}: {name: "torch._utils._rebuild_parameter", call: callRebuildParameter},
	{"torch", "FloatStorage"}:              {name: "torch.FloatStorage", dtype: api.F32},
	{"torch", "HalfStorage"}:               {name: "torch.HalfStorage", dtype: api.F16},
	{"torch", "BFloat16Storage"}:           {name: "torch.BFloat16Storage", dtype: api.BF16},
	{"torch", "DoubleStorage"}:             {name: "torch.DoubleStorage", dtype: api.F64},
	{"torch", "LongStorage"}:               {name: "torch.LongStorage", dtype: api.I64},
	{"torch", "IntStorage"}:                {name: "torch.IntStorage", dtype: api.I32},
	{"torch", "CharStorage"}:               {name: "torch.CharStorage", dtype: api.I8},
	{"torch", "ByteStorage"}:               {name: "torch.ByteStorage", dtype: api.U8},
	{"torch", "BoolStorage"}:               {name: "torch.BoolStorage", dtype: api.Bool},
}

// pyStorage is a tensor storage: numel elements of dtype held in the zip
// record data/<key>, whose bytes start at offset in the checkpoint file.
type pyStorage struct {
	dtype  api.DType
	key    string
	numel  int64
	offset int64
}

// pyTensor is a tensor as torch rebuilds it: a strided view of a storage.
// Sizes, strides and the offset are in elements and have not been checked
// against the storage yet.
type pyTensor struct {
	storage *pyStorage
	offset  int64
	shape   []int64
	stride  []int64
}

// loadStorage resolves the persistent id of a storage: the record key, the
// element type, and the element count the pickle claims for it.
type loadStorage func(key string, dtype api.DType, numel int64) (*pyStorage, error)

// unpickler is the state of the restricted pickle machine.
type unpickler struct {
	data    []byte
	pos     int
	stack   []any
	marks   []int // stack lengths at each MARK
	memo    map[uint32]any
	storage loadStorage
}

// unpickle runs the pickle in data and returns the value STOP leaves on top
// of the stack. Persistent ids are resolved with storage. Errors give the
// offset of the opcode at fault and wrap api.ErrCorrupt (malformed input)
// or api.ErrUnsupported (a refused global, opcode or construct).
func unpickle(data []byte, storage loadStorage) (any, error) {
	u := &unpickler{data: data, memo: map[uint32]any{}, storage: storage}
	for {
		at := u.pos
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("pickle ends at byte %d without STOP: %w", at, api.ErrCorrupt)
		}
		op := u.data[u.pos]
		u.pos++
		if op == opStop {
			if len(u.stack) != 1 || len(u.marks) != 0 {
				return nil, fmt.Errorf("pickle offset %d: STOP with %d values and %d marks on the stack, want 1 and 0: %w", at, len(u.stack), len(u.marks), api.ErrCorrupt)
			}
			return u.stack[0], nil
		}
		if err := u.step(op); err != nil {
			return nil, fmt.Errorf("pickle offset %d (opcode %#02x): %w", at, op, err)
		}
	}
}

// step executes one opcode other than STOP.
func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		if b[0] < 2 || b[0] > maxPickleProtocol {
			return fmt.Errorf("pickle protocol %d (want 2 to %d): %w", b[0], maxPickleProtocol, api.ErrUnsupported)
		}
	case opFrame:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		if n := binary.LittleEndian.Uint64(b); n > uint64(len(u.data)-u.pos) {
			return fmt.Errorf("frame of %d bytes runs past the end: %w", n, api.ErrCorrupt)
		}
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		u.push(int64(b[0]))
	case opBinInt2:
		b, err := u.read(2)
		if err != nil {
			return err
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1:
		return u.long1()
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBinUnicode:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		return u.unicode(uint64(binary.LittleEndian.Uint32(b)))
	case opShortBinUnicode:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		return u.unicode(uint64(b[0]))
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if err := u.need(n); err != nil {
			return err
		}
		items := pyTuple(append([]any(nil), u.stack[len(u.stack)-n:]...))
		u.stack = u.stack[:len(u.stack)-n]
		u.push(items)
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendTo([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendTo(items)
	case opEmptyDict:
		u.push(&pyDict{})
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := &pyDict{}
		u.push(d)
		return setItems(d, items)
	case opSetItem:
		if err := u.need(3); err != nil {
			return err
		}
		items := u.stack[len(u.stack)-2:]
		u.stack = u.stack[:len(u.stack)-2]
		return u.setItemsOnTop(items)
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItemsOnTop(items)
	case opBinPut, opLongBinPut, opMemoize:
		return u.put(op)
	case opBinGet, opLongBinGet:
		return u.get(op)
	case opGlobal:
		module, err := u.line()
		if err != nil {
			return err
		}
		name, err := u.line()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case opStackGlobal:
		if err := u.need(2); err != nil {
			return err
		}
		module, ok1 := u.stack[len(u.stack)-2].(string)
		name, ok2 := u.stack[len(u.stack)-1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("STACK_GLOBAL of %s and %s, not two strings: %w", describe(u.stack[len(u.stack)-2]), describe(u.stack[len(u.stack)-1]), api.ErrCorrupt)
		}
		u.stack = u.stack[:len(u.stack)-2]
		return u.global(module, name)
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		s, err := u.persistent(pid)
		if err != nil {
			return err
		}
		u.push(s)
	case opReduce:
		if err := u.need(2); err != nil {
			return err
		}
		fn, args := u.stack[len(u.stack)-2], u.stack[len(u.stack)-1]
		u.stack = u.stack[:len(u.stack)-2]
		v, err := reduce(fn, args)
		if err != nil {
			return err
		}
		u.push(v)
	case opBuild:
		return u.build()
	default:
		return fmt.Errorf("pickle opcode %#02x is not one a tensor checkpoint needs: %w", op, api.ErrUnsupported)
	}
	return nil
}

// read consumes the next n bytes of the input.
func (u *unpickler) read(n int) ([]byte, error) {
	if n > len(u.data)-u.pos {
		return nil, fmt.Errorf("operand of %d bytes runs past the end of the pickle: %w", n, api.ErrCorrupt)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// line consumes a newline-terminated operand (of GLOBAL).
func (u *unpickler) line() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", fmt.Errorf("GLOBAL operand has no newline: %w", api.ErrCorrupt)
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

// unicode pushes a UTF-8 string of n bytes.
func (u *unpickler) unicode(n uint64) error {
	if n > uint64(len(u.data)-u.pos) {
		return fmt.Errorf("string of %d bytes runs past the end of the pickle: %w", n, api.ErrCorrupt)
	}
	b, _ := u.read(int(n))
	if !utf8.Valid(b) {
		return fmt.Errorf("string is not valid UTF-8: %w", api.ErrCorrupt)
	}
	u.push(string(b))
	return nil
}

// long1 pushes a LONG1 integer: a length byte, then that many bytes of
// little-endian two's complement. Only values that fit in int64 are kept.
func (u *unpickler) long1() error {
	b, err := u.read(1)
	if err != nil {
		return err
	}
	n := int(b[0])
	if n > 8 {
		return fmt.Errorf("integer of %d bytes does not fit in 64 bits: %w", n, api.ErrUnsupported)
	}
	b, err = u.read(n)
	if err != nil {
		return err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if n > 0 && n < 8 && b[n-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * n) // sign-extend
	}
	u.push(int64(v))
	return nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

// need checks that the stack holds at least n values above the last mark.
func (u *unpickler) need(n int) error {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack)-floor < n {
		return fmt.Errorf("stack underflow: %w", api.ErrCorrupt)
	}
	return nil
}

func (u *unpickler) pop() (any, error) {
	if err := u.need(1); err != nil {
		return nil, err
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

// popMark removes and returns the values above the last mark, and the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("no MARK to pop to: %w", api.ErrCorrupt)
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// top returns the value on top of the stack without removing it.
func (u *unpickler) top() (any, error) {
	if err := u.need(1); err != nil {
		return nil, err
	}
	return u.stack[len(u.stack)-1], nil
}

// appendTo appends items to the list on top of the stack.
func (u *unpickler) appendTo(items []any) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	l, ok := v.(*pyList)
	if !ok {
		return fmt.Errorf("APPEND to %s, not a list: %w", describe(v), api.ErrCorrupt)
	}
	l.items = append(l.items, items...)
	return nil
}

// setItemsOnTop adds key, value pairs to the dict on top of the stack.
func (u *unpickler) setItemsOnTop(items []any) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	d, ok := v.(*pyDict)
	if !ok {
		return fmt.Errorf("SETITEM on %s, not a dict: %w", describe(v), api.ErrCorrupt)
	}
	return setItems(d, items)
}

// setItems adds items, alternating keys and values, to d.
func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("%d items do not pair into keys and values: %w", len(items), api.ErrCorrupt)
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// put stores the top of the stack in the memo.
func (u *unpickler) put(op byte) error {
	var idx uint32
	switch op {
	case opBinPut:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		idx = uint32(b[0])
	case opLongBinPut:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		idx = binary.LittleEndian.Uint32(b)
	default: // MEMOIZE: the next free index
		idx = uint32(len(u.memo))
	}
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[idx] = v
	return nil
}

// get pushes a value from the memo.
func (u *unpickler) get(op byte) error {
	var idx uint32
	if op == opBinGet {
		b, err := u.read(1)
		if err != nil {
			return err
		}
		idx = uint32(b[0])
	} else {
		b, err := u.read(4)
		if err != nil {
			return err
		}
		idx = binary.LittleEndian.Uint32(b)
	}
	v, ok := u.memo[idx]
	if !ok {
		return fmt.Errorf("memo index %d was never stored: %w", idx, api.ErrCorrupt)
	}
	u.push(v)
	return nil
}

// global pushes an allowed global and refuses every other one. Nothing is
// looked up or imported: the name is only compared with allowedGlobals.
func (u *unpickler) global(module, name string) error {
	g, ok := allowedGlobals[globalKey{module, name}]
	if !ok {
		return fmt.Errorf("pickle global %s is not allowed (a tensor checkpoint names only collections.OrderedDict, torch._utils tensor rebuilders and torch storage types of supported dtypes): %w",
			quoteGlobal(module, name), api.ErrUnsupported)
	}
	u.push(g)
	return nil
}

// quoteGlobal formats a global's name for an error message, quoted if it
// holds anything unusual.
func quoteGlobal(module, name string) string {
	s := truncate(module + "." + name)
	for _, r := range s {
		if r < 0x20 || r == utf8.RuneError || r == 0x7f {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// persistent resolves a persistent id: the tuple ("storage", storage type,
// key, location, numel) that torch.save writes for each tensor storage.
func (u *unpickler) persistent(pid any) (*pyStorage, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("persistent id is not a ('storage', type, key, location, numel) tuple: %w", api.ErrUnsupported)
	}
	typ, ok := t[1].(pyGlobal)
	if !ok || typ.call != notCallable {
		return nil, fmt.Errorf("persistent id: storage type is %s, not a torch storage type: %w", describe(t[1]), api.ErrCorrupt)
	}
	key, ok1 := t[2].(string)
	_, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, fmt.Errorf("persistent id: want a string key, a string location and a non-negative element count: %w", api.ErrCorrupt)
	}
	return u.storage(key, typ.dtype, numel)
}

// reduce applies an allowed callable to its argument tuple.
func reduce(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("REDUCE calls %s; only allowed globals may be called: %w", describe(fn), api.ErrUnsupported)
	}
	a, ok := args.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("REDUCE of %s with %s, not an argument tuple: %w", g.name, describe(args), api.ErrCorrupt)
	}
	switch g.call {
	case callOrderedDict:
		if len(a) != 0 {
			return nil, fmt.Errorf("%s with %d arguments (torch.save passes none): %w", g.name, len(a), api.ErrUnsupported)
		}
		return &pyDict{}, nil
	case callRebuildTensor:
		if len(a) != 4 {
			return nil, fmt.Errorf("%s with %d arguments, want 4: %w", g.name, len(a), api.ErrCorrupt)
		}
		return rebuildTensor(g.name, a)
	case callRebuildTensorV2:
		if len(a) != 6 && len(a) != 7 {
			return nil, fmt.Errorf("%s with %d arguments, want 6 or 7: %w", g.name, len(a), api.ErrCorrupt)
		}
		if _, ok := a[4].(bool); !ok {
			return nil, fmt.Errorf("%s: requires_grad is %s, not a bool: %w", g.name, describe(a[4]), api.ErrCorrupt)
		}
		if err := emptyDict(a[5]); err != nil {
			return nil, fmt.Errorf("%s: backward hooks: %w", g.name, err)
		}
		if len(a) == 7 && a[6] != nil {
			// Tensor metadata (such as a negative or conjugate bit) would
			// change the values' meaning.
			if err := emptyDict(a[6]); err != nil {
				return nil, fmt.Errorf("%s: tensor metadata: %w", g.name, err)
			}
		}
		return rebuildTensor(g.name, a[:4])
	case callRebuildParameter:
		if len(a) != 3 {
			return nil, fmt.Errorf("%s with %d arguments, want 3: %w", g.name, len(a), api.ErrCorrupt)
		}
		t, ok := a[0].(*pyTensor)
		if !ok {
			return nil, fmt.Errorf("%s of %s, not a tensor: %w", g.name, describe(a[0]), api.ErrCorrupt)
		}
		if _, ok := a[1].(bool); !ok {
			return nil, fmt.Errorf("%s: requires_grad is %s, not a bool: %w", g.name, describe(a[1]), api.ErrCorrupt)
		}
		if err := emptyDict(a[2]); err != nil {
			return nil, fmt.Errorf("%s: backward hooks: %w", g.name, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("REDUCE calls the storage type %s, which is only valid in a persistent id: %w", g.name, api.ErrUnsupported)
}

// emptyDict checks that v is an empty dict (or OrderedDict).
func emptyDict(v any) error {
	d, ok := v.(*pyDict)
	switch {
	case !ok:
		return fmt.Errorf("%s, not a dict: %w", describe(v), api.ErrCorrupt)
	case len(d.keys) != 0:
		return fmt.Errorf("%d entries, none supported: %w", len(d.keys), api.ErrUnsupported)
	}
	return nil
}

// rebuildTensor makes a tensor of the arguments (storage, storage_offset,
// size, stride) shared by torch's tensor rebuilders.
func rebuildTensor(fn string, a pyTuple) (*pyTensor, error) {
	s, ok := a[0].(*pyStorage)
	if !ok {
		return nil, fmt.Errorf("%s: storage is %s, not a storage: %w", fn, describe(a[0]), api.ErrCorrupt)
	}
	offset, ok := a[1].(int64)
	if !ok {
		return nil, fmt.Errorf("%s: storage offset is %s, not an integer: %w", fn, describe(a[1]), api.ErrCorrupt)
	}
	shape, err := intTuple(a[2])
	if err != nil {
		return nil, fmt.Errorf("%s: size: %w", fn, err)
	}
	stride, err := intTuple(a[3])
	if err != nil {
		return nil, fmt.Errorf("%s: stride: %w", fn, err)
	}
	return &pyTensor{storage: s, offset: offset, shape: shape, stride: stride}, nil
}

// intTuple converts a tuple of integers.
func intTuple(v any) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("%s, not a tuple: %w", describe(v), api.ErrCorrupt)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is %s, not an integer: %w", i, describe(x), api.ErrCorrupt)
		}
		out[i] = n
	}
	return out, nil
}

// build applies BUILD (set an object's state). torch.save pickles a module's
// state_dict as an OrderedDict whose instance dict holds a "_metadata"
// attribute (per-module version numbers); the state is checked to be a dict
// and dropped, since the tensors do not depend on it.
func (u *unpickler) build() error {
	state, err := u.pop()
	if err != nil {
		return err
	}
	obj, err := u.top()
	if err != nil {
		return err
	}
	if _, ok := obj.(*pyDict); !ok {
		return fmt.Errorf("BUILD of %s (only a dict's attributes may be set): %w", describe(obj), api.ErrUnsupported)
	}
	if _, ok := state.(*pyDict); !ok {
		return fmt.Errorf("BUILD with %s state, not a dict: %w", describe(state), api.ErrUnsupported)
	}
	return nil
}

// describe names the Python type of a machine value with its article ("an
// int", "a list"), for error messages. It never formats the value itself,
// which may be deeply nested or cyclic.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int64:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a str"
	case pyTuple:
		return "a tuple"
	case *pyList:
		return "a list"
	case *pyDict:
		return "a dict"
	case pyGlobal:
		return "the global " + v.name
	case *pyStorage:
		return "a storage"
	case *pyTensor:
		return "a tensor"
	}
	return fmt.Sprintf("a %T", v)
}

// keyText formats a dict key (a string or an integer) for a message.
func keyText(k any) string {
	if s, ok := k.(string); ok {
		return fmt.Sprintf("%q", truncate(s))
	}
	return fmt.Sprint(k)
}
