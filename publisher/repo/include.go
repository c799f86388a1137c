package repo

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/publisher/deb"
	"github.com/kiln-build/kiln/publisher/rpm"
)

// Input is one file to include.
type Input struct {
	// Name is the file's base name; its extension says what it is.
	Name string
	// Path is where the file is now.
	Path string
}

// Resolver finds a file a .dsc names; ok is false when it is not there.
type Resolver func(name string) (path string, ok bool)

// Entry is one package in a repository.
type Entry struct {
	Kind      string `json:"kind"` // deb, udeb, dsc, rpm
	Name      string `json:"name"`
	Version   string `json:"version"`
	Arch      string `json:"arch"`
	Component string `json:"component,omitempty"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Path      string `json:"path"`
}

// IncludeResult says what an include did.
type IncludeResult struct {
	Added    []Entry `json:"added"`
	Existing []Entry `json:"existing"`
}

type poolFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// row is one packages row.
type row struct {
	kind, name, version, arch, component string
	udeb                                 bool
	uploadSHA256, sha256                 string
	size                                 int64
	path                                 string
	stanza                               []byte
	meta                                 string
	files                                []poolFile
	// objects to move into the store: temp path -> sha256
	objects map[string]string
	// unnamed is an object written without a name (Store.unnamedFile),
	// held open until it is linked into the store as unnamedSum, or
	// closed, which drops it.
	unnamed    *os.File
	unnamedSum string
}

func (r *row) entry() Entry {
	k := r.kind
	if r.udeb {
		k = "udeb"
	}
	return Entry{Kind: k, Name: r.name, Version: r.version, Arch: r.arch, Component: r.component, SHA256: r.sha256, Size: r.size, Path: r.path}
}

// maxDSC bounds a .dsc file.
const maxDSC = 1 << 20

// Include adds files to a repository, all or nothing: one bad or
// conflicting file refuses the whole include, and a refused include, or
// one killed before its commit, leaves the repository's packages and
// published pool as they were (killed after it, the include is whole and
// the next publish links what is missing from the pool). The same
// name/version/architecture with different content is refused naming both
// digests; the identical file again is a no-op. signer is needed for rpm
// repositories (packages are signed as they enter); resolve finds the
// files a .dsc names (nil: beside the .dsc).
//
// The files are read in parallel and each package is recorded, in input
// order, in one database transaction as soon as it is read, so that an
// include holds a few packages in memory however many it adds (the result
// lists every package). The transaction holds the store's database for
// the whole include. Stored files move into the object store as their
// packages are recorded; those of a refused include are unreferenced
// there, and CollectObjects removes them.
func (s *Store) Include(ctx context.Context, repoName string, inputs []Input, resolve Resolver, signer Signer) (res IncludeResult, err error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	cfg, err := s.Repo(ctx, repoName)
	if err != nil {
		return res, err
	}
	s.removeStaleTmp()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("include into %s: %w", repoName, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	in, err := s.newIncluder(ctx, tx, cfg)
	if err != nil {
		return res, fmt.Errorf("include into %s: %w", repoName, err)
	}
	defer in.stmts.close()
	// Read (and copy into the store's tmp) in parallel, one worker per
	// CPU: the cost is file creation and hashing, which overlap; more
	// workers only contend for the tmp directory's lock (measured with
	// bench/publisher/run.sh). A few packages per worker are read ahead of
	// the one being recorded.
	var done atomic.Int64
	stop := s.progress("reading packages", &done, len(inputs))
	workers := runtime.GOMAXPROCS(0)
	err = inOrder(ctx, len(inputs), workers, includeReadAhead*workers,
		func(ctx context.Context, i int) (*row, error) {
			return s.readInput(ctx, inputs[i], cfg, resolve, signer)
		},
		func(_ int, r *row, err error) error {
			defer removeTemps(r)
			done.Add(1)
			if err != nil {
				return err
			}
			return in.add(ctx, r)
		},
		removeTemps)
	stop()
	if err != nil {
		return res, err
	}
	// The stored files reach the disk before the database says they are
	// there: one syncfs for all of them rather than an fsync each.
	if len(in.res.Added) > 0 {
		if err := s.syncFS(); err != nil {
			return res, fmt.Errorf("include into %s: %w", repoName, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("include into %s: %w", repoName, err)
	}
	// The files enter the published pool now, as with reprepro, so that a
	// publish only writes indexes. Publish links whatever is still missing
	// (after a crash here, say), so a failure is only worth a warning.
	if err := s.linkAdded(ctx, s.PublicDir(repoName), in.added); err != nil {
		s.log.Warn("included packages not yet in the published pool; the next publish retries", "repo", repoName, "error", err)
	}
	return in.res, nil
}

// includeReadAhead is how many packages per worker an include reads ahead
// of the one it records.
const includeReadAhead = 4

// removeTemps removes the temporary files of r (nil or not) that did not
// move into the object store.
func removeTemps(r *row) {
	if r == nil {
		return
	}
	for tmp := range r.objects {
		_ = os.Remove(tmp)
	}
	if r.unnamed != nil {
		_ = r.unnamed.Close()
		r.unnamed = nil
	}
}

// includer records the packages of one include in its transaction.
type includer struct {
	s     *Store
	cfg   Config
	stmts *includeStmts
	// firstPackage and firstPoolFile are the lowest rowids this include
	// can give: a row at or above them was added by this include.
	firstPackage, firstPoolFile int64
	now                         int64
	res                         IncludeResult
	// added are the files of the packages added, to link into the
	// published pool after the commit.
	added []poolFile
}

func (s *Store) newIncluder(ctx context.Context, tx *sql.Tx, cfg Config) (*includer, error) {
	in := &includer{s: s, cfg: cfg, now: s.now().Unix()}
	// SQLite gives a new row the largest rowid plus one (without
	// AUTOINCREMENT, as long as that fits in an int64).
	for _, q := range []struct {
		dst   *int64
		table string
	}{{&in.firstPackage, "packages"}, {&in.firstPoolFile, "pool_files"}} {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(rowid), 0) + 1 FROM `+q.table).Scan(q.dst); err != nil {
			return nil, err
		}
	}
	stmts, err := prepareInclude(ctx, tx)
	if err != nil {
		return nil, err
	}
	in.stmts = stmts
	return in, nil
}

// add records r, unless the repository (or this include) has it already,
// and moves its files into the object store.
func (in *includer) add(ctx context.Context, r *row) error {
	repoName := in.cfg.Name
	files, err := json.Marshal(r.files)
	if err != nil {
		return fmt.Errorf("include into %s: %w", repoName, err)
	}
	// Most packages are new: try the insert, and look at what is there
	// only when the repository has the name, version and architecture.
	ins, err := in.stmts.insert.ExecContext(ctx, repoName, r.kind, r.name, r.version, r.arch, r.component, r.udeb, r.uploadSHA256, r.sha256, r.size, r.path, r.stanza, r.meta, string(files), in.now)
	if err != nil {
		return fmt.Errorf("include %s into %s: %w", r.name, repoName, err)
	}
	if n, err := ins.RowsAffected(); err != nil {
		return fmt.Errorf("include %s into %s: %w", r.name, repoName, err)
	} else if n == 0 {
		return in.present(ctx, r)
	}
	for _, f := range r.files {
		if err := in.addPoolFile(ctx, r, f); err != nil {
			return err
		}
	}
	for tmp, sum := range r.objects {
		if err := in.s.putObject(tmp, sum); err != nil {
			return err
		}
		delete(r.objects, tmp)
	}
	if r.unnamed != nil {
		err := in.s.linkObject(r.unnamed, r.unnamedSum)
		r.unnamed = nil
		if err != nil {
			return err
		}
	}
	e := r.entry()
	// Only the entry outlives r: not what its strings were cut from.
	e.Name, e.Version, e.Arch = strings.Clone(e.Name), strings.Clone(e.Version), strings.Clone(e.Arch)
	in.res.Added = append(in.res.Added, e)
	in.added = append(in.added, r.files...)
	return nil
}

// present handles r when the repository already has its name, version and
// architecture: the same file is a no-op (listed as existing unless this
// include added it), another is refused.
func (in *includer) present(ctx context.Context, r *row) error {
	var have, published string
	var ours bool
	err := in.stmts.have.QueryRowContext(ctx, in.firstPackage, in.cfg.Name, r.kind, r.name, r.version, r.arch).Scan(&have, &published, &ours)
	switch {
	case err != nil:
		return fmt.Errorf("include into %s: %w", in.cfg.Name, err)
	case have == r.uploadSHA256 && ours:
		return nil
	case have == r.uploadSHA256:
		in.res.Existing = append(in.res.Existing, r.entry())
		return nil
	case in.cfg.BaseOf != "" && published == r.uploadSHA256:
		// The base's own published file, offered back: an rpm signed
		// as it entered the base, installed by a build of the sealed
		// release from that base.
		in.res.Existing = append(in.res.Existing, r.entry())
		return nil
	}
	return conflict(in.cfg, r, have)
}

// addPoolFile records that r (new) references the pool file f, which must
// have the content of what the repository or this include already has
// under its path.
func (in *includer) addPoolFile(ctx context.Context, r *row, f poolFile) error {
	repoName := in.cfg.Name
	ins, err := in.stmts.insertPool.ExecContext(ctx, repoName, f.Path, f.SHA256)
	if err != nil {
		return fmt.Errorf("include %s into %s: %w", r.name, repoName, err)
	}
	if n, err := ins.RowsAffected(); err != nil {
		return fmt.Errorf("include %s into %s: %w", r.name, repoName, err)
	} else if n == 1 {
		if err := in.s.checkPoolPath(repoName, f); err != nil {
			return fmt.Errorf("%w: include %s into %s: %w", ErrConflict, r.name, repoName, err)
		}
		return nil
	}
	var other string
	var ours bool
	if err := in.stmts.pool.QueryRowContext(ctx, in.firstPoolFile, repoName, f.Path).Scan(&other, &ours); err != nil {
		return fmt.Errorf("include into %s: %w", repoName, err)
	}
	switch {
	case other == f.SHA256:
		return nil // referenced, and the same content
	case ours:
		return fmt.Errorf("%w: include %s into %s: two of the files name %s, with sha256 %s and %s: the same file name must keep the same content", ErrConflict, r.name, repoName, f.Path, other, f.SHA256)
	}
	return fmt.Errorf("%w: include %s into %s: %s is already in the repository with sha256 %s, the new file has sha256 %s: the same file name must keep the same content", ErrConflict, r.name, repoName, f.Path, other, f.SHA256)
}

// linkAdded makes the files an include added present in the published pool
// below dir (see linkPoolFile). A package's pool directory is made before
// its first link rather than looked for: most packages of a large include
// are new, and the files of one source, which share a directory, come
// together.
func (s *Store) linkAdded(ctx context.Context, dir string, files []poolFile) error {
	made := ""
	for i, f := range files {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if d := filepath.Dir(dst); d != made {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				_ = os.MkdirAll(d, 0o755) // a new parent; linkPoolFile reports what fails
			}
			made = d
		}
		if os.Link(s.objectPath(f.SHA256), dst) == nil {
			continue
		}
		if err := s.linkPoolFile(dir, f); err != nil {
			return err
		}
	}
	return nil
}

// checkPoolPath refuses a new file for a pool path that no package of the
// repository references but that is still in the published pool with other
// content: a removed package, which clients may fetch until its file leaves
// the pool two publishes after the removal.
func (s *Store) checkPoolPath(repoName string, f poolFile) error {
	have, err := fileSHA256(filepath.Join(s.PublicDir(repoName), filepath.FromSlash(f.Path)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the published pool: %w", err)
	}
	if have != f.SHA256 {
		return fmt.Errorf("%s is still in the published pool with sha256 %s (a removed package; it leaves the pool on the second publish after its removal), the new file has sha256 %s: publish twice first, or give the rebuild a new version", f.Path, have, f.SHA256)
	}
	return nil
}

// ErrConflict is wrapped when a different file claims a name/version/arch
// or pool path that the repository already has.
var ErrConflict = errors.New("conflicting package")

// includeStmts are the statements an include runs per package, prepared
// once per transaction.
type includeStmts struct {
	have, pool, insert, insertPool *sql.Stmt
}

func prepareInclude(ctx context.Context, tx *sql.Tx) (*includeStmts, error) {
	var st includeStmts
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&st.have, `SELECT upload_sha256, sha256, rowid >= ? FROM packages WHERE repo=? AND kind=? AND name=? AND version=? AND arch=?`},
		{&st.pool, `SELECT sha256, rowid >= ? FROM pool_files WHERE repo=? AND path=?`},
		{&st.insert, `INSERT OR IGNORE INTO packages (repo, kind, name, version, arch, component, udeb, upload_sha256, sha256, size, path, stanza, meta, files, added)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&st.insertPool, `INSERT OR IGNORE INTO pool_files (repo, path, sha256) VALUES (?, ?, ?)`},
	} {
		stmt, err := tx.PrepareContext(ctx, p.q)
		if err != nil {
			st.close()
			return nil, err
		}
		*p.dst = stmt
	}
	return &st, nil
}

func (st *includeStmts) close() {
	for _, s := range []*sql.Stmt{st.have, st.pool, st.insert, st.insertPool} {
		if s != nil {
			s.Close()
		}
	}
}

// readInput reads one input into a row (and temporary store files).
func (s *Store) readInput(ctx context.Context, in Input, cfg Config, resolve Resolver, signer Signer) (*row, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := deb.CheckFileName(in.Name); err != nil {
		return nil, fmt.Errorf("include %q: %w", in.Name, err)
	}
	ext := path.Ext(in.Name)
	var all []string
	for _, f := range families {
		if !slices.Contains(f.extensions(), ext) {
			all = append(all, f.extensions()...)
			continue
		}
		if f.format() == cfg.Format {
			return f.read(ctx, s, in, cfg, resolve, signer)
		}
		return nil, fmt.Errorf("include %s: a %s file cannot go into %s repository %s", in.Name, ext, cfg.Format, cfg.Name)
	}
	return nil, fmt.Errorf("include %s: unknown file type %q: expected %s", in.Name, ext, orList(all))
}

func conflict(cfg Config, r *row, have string) error {
	if cfg.BaseOf != "" {
		return fmt.Errorf("%w: repository %s (the base of %s): base package %s %s %s: stored sha256 %s, offered sha256 %s: a build installed other bytes under this name, version and architecture than an earlier build of the release did; keep one upstream mirror per release, or remove the stored package (publisher remove --base --repo %s %s/%s=%s)",
			ErrConflict, cfg.Name, cfg.BaseOf, r.name, r.version, r.arch, have, r.uploadSHA256, cfg.BaseOf, r.name, r.arch, r.version)
	}
	return fmt.Errorf("%w: repository %s already has %s %s %s with sha256 %s; the new file has sha256 %s: a different build of the same version is refused, give the rebuild a new version",
		ErrConflict, cfg.Name, r.name, r.version, r.arch, have, r.uploadSHA256)
}

// readBinary reads the .deb of in into a temporary file of the store (see
// cloneOrTee) and returns its row.
func (s *Store) readBinary(in Input, udeb bool, cfg Config) (*row, error) {
	f, err := os.Open(in.Path)
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	defer f.Close()
	r := &row{}
	tmp, unnamed, err := s.unnamedFile()
	if err != nil {
		return nil, err
	}
	if unnamed {
		r.unnamed = tmp
	} else {
		if tmp, err = s.tempFile("deb-*"); err != nil {
			return nil, err
		}
		r.objects = map[string]string{tmp.Name(): ""}
	}
	b, err := deb.ReadBinary(s.cloneOrTee(tmp, f), udeb, s.limits)
	if !unnamed {
		if cerr := tmp.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return r, fmt.Errorf("include %s: %w", in.Name, err)
	}
	poolPath := deb.PoolDir(cfg.Component, b.Source) + "/" + b.FileName()
	if unnamed {
		r.unnamedSum = b.SHA256
	} else {
		r.objects[tmp.Name()] = b.SHA256
	}
	r.kind, r.name, r.version, r.arch, r.component, r.udeb = "deb", b.Name, b.Version, b.Arch, cfg.Component, udeb
	r.uploadSHA256, r.sha256, r.size, r.path = b.SHA256, b.SHA256, b.Size, poolPath
	r.stanza = deb.PackagesStanza(b, poolPath)
	r.files = []poolFile{{Path: poolPath, SHA256: b.SHA256, Size: b.Size}}
	return r, nil
}

// cloneOrTee fills tmp (new and empty) with the content of src and returns
// the reader to hash and parse that content from. Where the file system
// can, tmp becomes a reflink clone of src (FICLONE: the blocks are shared
// until either file is written, so nothing is copied) and the reader reads
// tmp: what is hashed is what is stored, whatever happens to src after the
// clone. Elsewhere (ext4, another file system) the reader reads src and
// copies it into tmp as it goes; once the store's file system has refused
// a clone as unsupported, no further clone is tried.
func (s *Store) cloneOrTee(tmp, src *os.File) io.Reader {
	if s.noClone.Load() {
		return io.TeeReader(src, tmp)
	}
	err := unix.IoctlFileClone(int(tmp.Fd()), int(src.Fd()))
	if err == nil {
		return tmp
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
		// The file systems of src and tmp are the same (else EXDEV)
		// and cannot clone.
		s.noClone.Store(true)
	}
	// A refused clone writes nothing; make sure. (Not a truncate of the
	// empty file: on ext4 that would make its close start writing it
	// out, file by file.)
	if fi, serr := tmp.Stat(); serr != nil || fi.Size() != 0 {
		_ = tmp.Truncate(0)
	}
	return io.TeeReader(src, tmp)
}

// hashCopy copies the file at p into a temporary file and returns its
// checksums.
func (s *Store) hashCopy(p string, limit int64) (string, deb.Checksums, []byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", deb.Checksums{}, nil, err
	}
	defer f.Close()
	tmp, err := s.tempFile("src-*")
	if err != nil {
		return "", deb.Checksums{}, nil, err
	}
	h := deb.NewHasher()
	var keep bytes.Buffer
	var w io.Writer = h
	if limit > 0 {
		w = io.MultiWriter(w, &keep)
		_, err = io.Copy(w, io.LimitReader(s.cloneOrTee(tmp, f), limit+1))
	} else {
		_, err = io.Copy(w, s.cloneOrTee(tmp, f))
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", deb.Checksums{}, nil, err
	}
	if limit > 0 && int64(keep.Len()) > limit {
		os.Remove(tmp.Name())
		return "", deb.Checksums{}, nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return tmp.Name(), h.Sum(), keep.Bytes(), nil
}

func (s *Store) readDSC(in Input, resolve Resolver, cfg Config) (*row, error) {
	tmp, sums, data, err := s.hashCopy(in.Path, maxDSC)
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	r := &row{objects: map[string]string{tmp: sums.SHA256}}
	src, err := deb.ParseDSC(in.Name, data, sums)
	if err != nil {
		return r, fmt.Errorf("include: %w", err)
	}
	dir := deb.PoolDir(cfg.Component, src.Name)
	r.files = []poolFile{{Path: dir + "/" + in.Name, SHA256: sums.SHA256, Size: sums.Size}}
	for i, want := range src.Files {
		p, ok := resolve(want.Name)
		if !ok {
			return r, fmt.Errorf("include %s: it names %s, which is not there: give it beside the .dsc (or upload it)", in.Name, want.Name)
		}
		ftmp, got, _, err := s.hashCopy(p, 0)
		if err != nil {
			return r, fmt.Errorf("include %s: %s: %w", in.Name, want.Name, err)
		}
		r.objects[ftmp] = got.SHA256
		for _, c := range []struct{ what, want, got string }{{"MD5", want.MD5, got.MD5}, {"SHA1", want.SHA1, got.SHA1}, {"SHA256", want.SHA256, got.SHA256}, {"SHA512", want.SHA512, got.SHA512}} {
			if c.want != "" && c.want != c.got {
				return r, fmt.Errorf("include %s: %s has %s %s, the .dsc says %s: the file is not the one the .dsc was made with", in.Name, want.Name, c.what, c.got, c.want)
			}
		}
		if want.Size != got.Size {
			return r, fmt.Errorf("include %s: %s is %d bytes, the .dsc says %d", in.Name, want.Name, got.Size, want.Size)
		}
		src.Files[i].Checksums = got
		r.files = append(r.files, poolFile{Path: dir + "/" + want.Name, SHA256: got.SHA256, Size: got.Size})
	}
	r.kind, r.name, r.version, r.arch, r.component = "dsc", src.Name, src.Version, "source", cfg.Component
	r.uploadSHA256, r.sha256, r.size, r.path = sums.SHA256, sums.SHA256, sums.Size, dir+"/"+in.Name
	r.stanza = deb.SourcesStanza(src, dir)
	return r, nil
}

var (
	rpmName = regexp.MustCompile(`^[A-Za-z0-9_+.-]+$`)
	// rpmVersion also allows the '~' (sorts before) and '^' (sorts after)
	// that rpm allows in versions and releases, e.g. 1.0~rc1, 0.5~deb12u1.
	rpmVersion = regexp.MustCompile(`^[A-Za-z0-9_+.~^-]+$`)
)

func (s *Store) readRPM(ctx context.Context, in Input, signer Signer, cfg Config) (*row, error) {
	if signer == nil {
		return nil, fmt.Errorf("include %s: rpm packages are signed as they enter the repository: give the signing key (--key)", in.Name)
	}
	which, err := rpm.ParseSignatures(cfg.RPMSignatures)
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	// The original is read in place, through one open file that both the
	// parse (whose Checksum is the upload's sha256) and the signer read,
	// and signed into the store's tmp; a file that changes meanwhile is
	// refused.
	src, err := os.Open(in.Path)
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	defer src.Close()
	before, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	orig, err := rpm.Read(src, before.Size())
	if err != nil {
		return nil, fmt.Errorf("include %s: %w", in.Name, err)
	}
	for i, v := range []string{orig.Name, orig.Arch, orig.Version, orig.Release} {
		re := rpmName
		if i >= 2 {
			re = rpmVersion
		}
		if !re.MatchString(v) || strings.HasPrefix(v, ".") {
			return nil, fmt.Errorf("include %s: %q is not a safe rpm name, version, release or architecture", in.Name, v)
		}
	}
	signed, err := s.tempName("rpm-signed-")
	if err != nil {
		return nil, err
	}
	r := &row{objects: map[string]string{signed: ""}}
	if err := rpm.SignReaderAt(ctx, signer, src, before.Size(), in.Name, signed, which); err != nil {
		return r, fmt.Errorf("include %s: sign: %w", in.Name, err)
	}
	after, err := src.Stat()
	if err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return r, fmt.Errorf("include %s: the file changed while it was being included: include it again", in.Name)
	}
	p, err := rpm.ReadFile(signed)
	if err != nil {
		return r, fmt.Errorf("include %s: read signed copy: %w", in.Name, err)
	}
	r.objects[signed] = p.Checksum
	evr := p.Version + "-" + p.Release
	if p.Epoch != 0 {
		evr = fmt.Sprintf("%d:%s", p.Epoch, evr)
	}
	fileName := fmt.Sprintf("%s-%s-%s.%s.rpm", p.Name, p.Version, p.Release, p.Arch)
	p.Location = "Packages/" + strings.ToLower(p.Name[:1]) + "/" + fileName
	meta, err := json.Marshal(p)
	if err != nil {
		return r, fmt.Errorf("include %s: %w", in.Name, err)
	}
	r.kind, r.name, r.version, r.arch = "rpm", p.Name, evr, p.Arch
	r.uploadSHA256, r.sha256, r.size, r.path = orig.Checksum, p.Checksum, p.PackageSize, p.Location
	r.meta = string(meta)
	r.files = []poolFile{{Path: p.Location, SHA256: p.Checksum, Size: p.PackageSize}}
	return r, nil
}
