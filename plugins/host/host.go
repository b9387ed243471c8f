// Package host finds densessm plugins, runs them as child processes
// (hashicorp/go-plugin over gRPC) and makes what they serve available
// through the api registry: a plugin's architectures are listed with the
// built-in ones, and its backends are selectable by name, so that the
// trainer, eval, generate, the CLI and the Python package use a plugin
// model exactly like a built-in one (docs/plugins.md).
//
// A plugin model is a client (it implements api.Model, api.TrainStepper
// and api.DirLoader on its architecture) whose every call is one request
// with a deadline. A plugin that crashes, hangs past the deadline or exits
// gives an error naming it; its process is killed and the next model
// built starts a fresh one. Plugin processes never outlive the host: they
// are killed by Close, by the parent-death signal on Linux, and exit by
// themselves when re-parented.
package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/plugins/internal/wire"
	pb "github.com/densessm/densessm/plugins/proto"
)

// PathEnv is the environment variable that lists folders of plugins,
// separated by the system's list separator (":" on Unix).
const PathEnv = "DENSESSM_PLUGIN_PATH"

// TimeoutEnv overrides Options.CallTimeout (a Go duration, "90s").
const TimeoutEnv = "DENSESSM_PLUGIN_TIMEOUT"

// Plugin executables are named with one of these prefixes.
var prefixes = []string{"densessm-plugin-", "densessm-backend-"}

// Options configure how plugins are found and run.
type Options struct {
	// Dirs are the folders searched for plugins; nil means DefaultDirs().
	Dirs []string
	// LockFile, when it exists, pins every plugin's SHA-256: a plugin it
	// does not list, or whose binary changed, is refused. Empty means
	// DefaultLockFile().
	LockFile string
	// CallTimeout bounds every request; 0 means 10 minutes (or TimeoutEnv).
	// A plugin that does not answer in time is killed.
	CallTimeout time.Duration
	// StartTimeout bounds starting a plugin and its handshake; 0 means 10 s.
	StartTimeout time.Duration
	// Log receives the plugins' stderr, each line prefixed with the
	// plugin's file name; nil means os.Stderr.
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.Dirs == nil {
		o.Dirs = DefaultDirs()
	}
	if o.LockFile == "" {
		o.LockFile = DefaultLockFile()
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Minute
		if d, err := time.ParseDuration(os.Getenv(TimeoutEnv)); err == nil && d > 0 {
			o.CallTimeout = d
		}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	return o
}

// DefaultDirs returns the folders on DENSESSM_PLUGIN_PATH followed by the
// per-user plugins folder (UserDir).
func DefaultDirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv(PathEnv)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if d := UserDir(); d != "" {
		dirs = append(dirs, d)
	}
	return dirs
}

// UserDir returns the per-user plugins folder: densessm/plugins under the
// user's configuration folder (~/.config/densessm/plugins on Linux).
func UserDir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "densessm", "plugins")
}

// DefaultLockFile returns plugins.lock in the per-user densessm folder.
func DefaultLockFile() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "densessm", "plugins.lock")
}

// Find returns the plugin executables in dirs: regular executable files
// named densessm-plugin-* or densessm-backend-*, the first of each name
// (earlier folders shadow later ones), in order. Missing folders are
// skipped.
func Find(dirs []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("plugins: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if seen[name] || !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
				continue
			}
			path, err := filepath.Abs(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("plugins: %w", err)
			}
			st, err := os.Stat(path)
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				continue
			}
			seen[name] = true
			out = append(out, path)
		}
	}
	return out, nil
}

// Description is what a plugin says it serves.
type Description struct {
	Name            string   `json:"name"`
	Version         string   `json:"version"`
	Architectures   []string `json:"architectures"`
	Backends        []string `json:"backends"`
	DensessmVersion string   `json:"densessm_version"`
}

// Plugin is one plugin executable and, while it runs, its process.
type Plugin struct {
	// Path is the executable's absolute path.
	Path string
	// Desc is what the plugin said it serves when it was opened.
	Desc Description

	opts   Options
	sum    []byte // pinned SHA-256, nil when not locked
	remote bool   // this host can read the plugin's memory (see wire.Probe)

	mu     sync.Mutex
	client *plugin.Client
	rpc    pb.RuntimeClient
	gen    int // incremented at each start; models carry the gen they live in
}

// Open starts the plugin at path, asks what it serves, and keeps it
// running. A plugin that cannot start (not a plugin, another protocol
// version, a checksum that does not match the lock file, junk on its
// stdout before the handshake) gives an error naming it.
func Open(ctx context.Context, path string, opts Options) (*Plugin, error) {
	opts = opts.withDefaults()
	p := &Plugin{Path: path, opts: opts}
	sum, err := lockedSum(opts.LockFile, path)
	if err != nil {
		return nil, err
	}
	p.sum = sum
	var desc *pb.DescribeResponse
	err = p.call(ctx, "describe", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		desc, err = c.Describe(ctx, &pb.DescribeRequest{}, o...)
		return err
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Desc = Description{
		Name: desc.Name, Version: desc.Version, Architectures: desc.Architectures,
		Backends: desc.Backends, DensessmVersion: desc.DensessmVersion,
	}
	if p.Desc.Name == "" {
		p.Close()
		return nil, fmt.Errorf("plugin %s: describes itself with no name: %w", path, api.ErrCorrupt)
	}
	if desc.ProbeAddr != 0 && desc.ProbeLen == int64(len(wire.Probe)) {
		buf := make([]byte, len(wire.Probe))
		p.remote = readRemote(p.pid(p.gen), desc.ProbeAddr, buf) == nil && bytes.Equal(buf, wire.Probe)
	}
	return p, nil
}

// String names the plugin in errors: its name and file.
func (p *Plugin) String() string {
	if p.Desc.Name == "" {
		return filepath.Base(p.Path)
	}
	return fmt.Sprintf("%s (%s)", p.Desc.Name, filepath.Base(p.Path))
}

// Close stops the plugin's process. Models built in it stop working.
func (p *Plugin) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked(false)
}

// stopLocked stops the process and forgets it: asked to exit, or killed
// at once (a plugin that has stopped answering).
func (p *Plugin) stopLocked(kill bool) {
	if p.client == nil {
		return
	}
	if rc := p.client.ReattachConfig(); kill && rc != nil && rc.Pid > 0 {
		if proc, err := os.FindProcess(rc.Pid); err == nil {
			proc.Kill()
		}
	}
	p.client.Kill()
	p.client, p.rpc = nil, nil
}

// pid returns the process id of generation gen of the plugin's process
// (0 when another generation, or none, runs, or it has exited).
func (p *Plugin) pid(gen int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil || p.gen != gen || p.client.Exited() {
		return 0
	}
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// conn returns the client of the running process, starting it first when
// there is none, and the generation it belongs to.
func (p *Plugin) conn() (pb.RuntimeClient, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil && p.client.Exited() {
		p.stopLocked(true)
	}
	if p.client != nil {
		return p.rpc, p.gen, nil
	}
	cmd := exec.Command(p.Path)
	setParentDeath(cmd)
	var secure *plugin.SecureConfig
	if p.sum != nil {
		secure = &plugin.SecureConfig{Checksum: p.sum, Hash: sha256.New()}
	}
	log := &prefixWriter{w: p.opts.Log, prefix: filepath.Base(p.Path) + ": "}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.Plugins(nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          true,
		StartTimeout:     p.opts.StartTimeout,
		Stderr:           log,
		SyncStdout:       log,
		SyncStderr:       log,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: log, Level: hclog.Error}),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessage), grpc.MaxCallSendMsgSize(wire.MaxMessage)),
			grpc.WithInitialWindowSize(wire.Window),
			grpc.WithInitialConnWindowSize(wire.Window),
			grpc.WithWriteBufferSize(wire.Buffer),
			grpc.WithReadBufferSize(wire.Buffer),
		},
	})
	proto, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, 0, fmt.Errorf("plugin %s: %w", p, startError(err))
	}
	raw, err := proto.Dispense(wire.PluginName)
	if err != nil {
		c.Kill()
		return nil, 0, fmt.Errorf("plugin %s: %v: %w", p, err, api.ErrUnsupported)
	}
	p.client, p.rpc = c, raw.(pb.RuntimeClient)
	p.gen++
	return p.rpc, p.gen, nil
}

// startError says why a plugin did not start, in a user's terms.
func startError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return fmt.Errorf("its SHA-256 is not the one the lock file pins (rebuilt or replaced? run densessm plugins lock to accept it): %w", api.ErrCorrupt)
	case strings.Contains(strings.ToLower(msg), "incompatible api version"):
		return fmt.Errorf("it speaks another version of the plugin protocol than this densessm (%d): rebuild it against this version: %v: %w", wire.ProtocolVersion, err, api.ErrUnsupported)
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		return fmt.Errorf("it wrote something other than the handshake on stdout (plugins must log to stderr): %v: %w", err, api.ErrCorrupt)
	}
	return fmt.Errorf("it did not start: %w", err)
}

// call runs one request against the plugin with the call deadline,
// starting the process if needed, and turns what went wrong into an error
// naming the plugin: its own error (with its api kind), a crash or a hang
// (the process is then killed, so that the next request starts afresh).
func (p *Plugin) call(ctx context.Context, what string, f func(context.Context, pb.RuntimeClient, ...grpc.CallOption) error) error {
	_, err := p.callGen(ctx, 0, what, f)
	return err
}

// callGen is call for a request on something that lives in generation gen
// of the process (0: any); it returns the generation that answered.
func (p *Plugin) callGen(ctx context.Context, gen int, what string, f func(context.Context, pb.RuntimeClient, ...grpc.CallOption) error) (int, error) {
	if gen != 0 && p.pid(gen) == 0 { // do not start a process just to say so
		return 0, fmt.Errorf("plugin %s: %s: the plugin process it lived in has exited: %w", p, what, api.ErrNotFound)
	}
	c, now, err := p.conn()
	if err != nil {
		return 0, err
	}
	if gen != 0 && gen != now {
		return 0, fmt.Errorf("plugin %s: %s: the plugin process it lived in has exited: %w", p, what, api.ErrNotFound)
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
	defer cancel()
	var md metadata.MD
	err = f(cctx, c, grpc.Trailer(&md))
	if err == nil {
		return now, nil
	}
	if ctx.Err() != nil {
		return now, fmt.Errorf("plugin %s: %s: %w", p, what, ctx.Err())
	}
	st, _ := status.FromError(err)
	if kinds := md.Get(wire.ErrorTrailer); len(kinds) > 0 {
		return now, &RemoteError{Plugin: p.String(), Op: what, Msg: st.Message(), kind: wire.KindError(kinds[0])}
	}
	p.mu.Lock()
	exited := p.client != nil && p.client.Exited()
	p.mu.Unlock()
	switch {
	case st.Code() == codes.DeadlineExceeded:
		p.restart(now)
		return now, fmt.Errorf("plugin %s: %s: no answer within %s; the plugin was stopped (set %s for slower work): %w",
			p, what, p.opts.CallTimeout, TimeoutEnv, context.DeadlineExceeded)
	case st.Code() == codes.Unimplemented && !exited:
		// The plugin's service has no such method: it was built before
		// the request was added to the protocol.
		return now, fmt.Errorf("plugin %s: %s: the plugin does not serve this request (%s); rebuild it against this densessm: %w",
			p, what, st.Message(), api.ErrUnsupported)
	case exited || st.Code() == codes.Unavailable:
		p.restart(now)
		return now, fmt.Errorf("plugin %s: %s: the plugin process exited or crashed (its stderr above may say why): %w", p, what, api.ErrInternal)
	}
	return now, fmt.Errorf("plugin %s: %s: %s: %w", p, what, st.Message(), api.ErrInternal)
}

// restart stops generation gen of the process, unless a newer one runs.
func (p *Plugin) restart(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == gen {
		p.stopLocked(true)
	}
}

// RemoteError is an error a plugin returned for a request: its message,
// and the api sentinel it wrapped in the plugin's process (errors.Is
// works).
type RemoteError struct {
	Plugin, Op, Msg string
	kind            error
}

func (e *RemoteError) Error() string { return fmt.Sprintf("plugin %s: %s: %s", e.Plugin, e.Op, e.Msg) }

// Unwrap returns the api sentinel the plugin's error wrapped.
func (e *RemoteError) Unwrap() error { return e.kind }

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	line   []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range b {
		w.line = append(w.line, c)
		if c == '\n' {
			w.w.Write(append([]byte(w.prefix), w.line...))
			w.line = w.line[:0]
		}
	}
	return len(b), nil
}

// Sum returns the SHA-256 of the file at path, in hex.
func Sum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
