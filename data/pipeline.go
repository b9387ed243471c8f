package data

import (
	"context"
	"fmt"
	"sync"

	"github.com/densessm/densessm/api"
)

// encoded is one document after encoding.
type encoded struct {
	idx       int64  // the document's index in the corpus
	toks      []byte // its tokens (and separator), little-endian
	n         int64  // how many tokens toks holds
	textBytes int    // the document's length in bytes
	read      int64  // corpus bytes read when the document was read
	err       error
}

// encodeCorpus reads the documents of c on one goroutine, encodes them on
// workers goroutines, and calls write with each result in document order on
// the calling goroutine. At most 2*workers documents are in flight (read
// and not yet written), so memory holds O(workers) documents whatever the
// size of the corpus. The first error (of reading, encoding or write)
// cancels the rest and is returned.
func encodeCorpus(ctx context.Context, c *Corpus, workers int,
	encode func(ctx context.Context, doc string) ([]byte, int64, error), write func(e encoded) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		idx  int64
		text string
		read int64
	}
	jobs := make(chan job, workers)
	results := make(chan encoded, workers)
	slots := make(chan struct{}, 2*workers)

	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(jobs)
		var idx, read int64
		readErr = c.DocumentsProgress(ctx, func(doc string) error {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("read corpus: %w", ctx.Err())
			}
			jobs <- job{idx: idx, text: doc, read: read}
			idx++
			return nil
		}, func(n int64) { read = n })
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				e := encoded{idx: j.idx, textBytes: len(j.text), read: j.read}
				if err := ctx.Err(); err != nil {
					e.err = err
				} else {
					e.toks, e.n, e.err = safeEncode(ctx, encode, j.text)
				}
				results <- e
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	pending := make(map[int64]encoded)
	var next int64
	var firstErr error
	for e := range results {
		pending[e.idx] = e
		for {
			p, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			<-slots
			if firstErr != nil {
				continue
			}
			if p.err != nil {
				firstErr = fmt.Errorf("document %d: %w", p.idx, p.err)
			} else {
				firstErr = write(p)
			}
			if firstErr != nil {
				cancel()
			}
		}
	}
	<-readDone
	if firstErr != nil {
		return firstErr
	}
	return readErr
}

// safeEncode runs encode, turning a panic into an error.
func safeEncode(ctx context.Context, encode func(context.Context, string) ([]byte, int64, error), doc string) (b []byte, n int64, err error) {
	defer api.Recover(&err)
	return encode(ctx, doc)
}
