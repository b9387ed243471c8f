// Package data turns text corpora into token files for training and reads
// them back as batches.
//
// # Sources
//
// Open resolves files, folders and globs into a Corpus; Corpus.Documents
// streams its documents in a fixed order, holding one document (or one
// Parquet page batch, or one Arrow record batch) at a time. The format of a
// file is chosen by its extension:
//
//	.jsonl, .ndjson  JSON lines: one object per line; the text is the string
//	                 field SourceOptions.Field ("text" by default); blank
//	                 lines and nulls are skipped, a line without the field
//	                 is an error naming the fields it has
//	.parquet         Parquet (as datasets' to_parquet writes it), read row
//	                 group by row group, 64 values at a time, pages through
//	                 a 1 MiB buffer; the text column is a string (byte
//	                 array) column
//	.arrow           Arrow IPC, the stream format that datasets'
//	                 save_to_disk and cache write, or the file format
//	                 (detected by its "ARROW1" magic), read record batch by
//	                 record batch; the text column is string, large_string
//	                 or string_view
//	anything else    plain text, one file being one document (valid UTF-8
//	                 without NUL)
//
// Null and empty texts are not documents. A missing column is an error
// naming the columns there are; the column of Parquet and Arrow files is
// checked by Open. Folders are walked in lexical order and globs (* ? [ ]
// within a path element, ** for any number of folders) match in the same
// order; both leave out hidden names and files that do not look like UTF-8
// text, and a folder written by save_to_disk gives the data files its
// state.json lists.
//
// # Token files
//
// Build encodes every document (in parallel, written in document order,
// each followed by a separator token) into two token files, train.tokens
// and val.tokens, and records its inputs in manifest.json so that UpToDate
// can tell when a rebuild is not needed. A token file is
//
//	offset  size  field
//	0       8     magic "DSSMTOKS"
//	8       4     version, 1 (uint32, little-endian)
//	12      4     token width in bytes: 2 when the vocabulary has at most
//	              65536 ids, else 4 (uint32, little-endian)
//	16      8     token count n (uint64, little-endian)
//	24      n*w   the tokens, unsigned little-endian integers of the width
//
// and nothing after. OpenTokens checks the header against the file size
// before reading anything else; reads use ReadAt, so memory does not grow
// with the file.
//
// # Validation split
//
// Document i (counting from 0 over the whole corpus, in reading order) is
// held out for validation when SplitMix64's finalizer of i, scaled to
// [0, 1), is below ValFraction; the choice depends on nothing else, so it
// is the same on every build. When ValFraction > 0 and there are at least
// two documents, neither file is left without a document: if none was drawn
// for validation the last training document moves there (and the other way
// round). Both files keep document order.
//
// # Blocks and shuffling
//
// A Loader cuts a token file into blocks of SeqLen+1 tokens that overlap by
// one: block i covers tokens [i*SeqLen, (i+1)*SeqLen+1), its first SeqLen
// tokens being the inputs and its last SeqLen the targets, so a file of n
// tokens has (n-1)/SeqLen blocks. Blocks cross document boundaries; the
// separator marks them. Epoch e visits every block once, in the order of a
// Fisher-Yates shuffle driven by math/rand/v2's PCG seeded with (seed, e);
// an epoch has NumBlocks/BatchSize batches, the last partial batch being
// dropped. No generator state needs saving: a Position (epoch, batch) says
// everything, and Seek to a saved Position gives the batches a straight run
// would have given. Batches reads blocks in file order, for validation.
package data
