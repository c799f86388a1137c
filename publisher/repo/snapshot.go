package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Snapshot describes a snapshot.
type Snapshot struct {
	Name     string    `json:"name"`
	Repo     string    `json:"repo"`
	Created  time.Time `json:"created"`
	Packages int       `json:"packages"`
	// Base names the snapshot of the repository's base taken with it
	// (BaseName of Name), when the repository has a base.
	Base string `json:"base,omitempty"`
}

// CreateSnapshot records the repository's current package set under name.
// Snapshots are immutable: an existing name is refused. Files are shared.
// A repository with a base is snapshotted together with it: the base's
// package set is recorded at the same moment as snapshot BaseName(name), so
// that the snapshot of a release holds everything its builds used.
func (s *Store) CreateSnapshot(ctx context.Context, repoName, name string) (Snapshot, error) {
	if err := CheckName("snapshot", name); err != nil {
		return Snapshot{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()
	cfg, err := s.Repo(ctx, repoName)
	if err != nil {
		return Snapshot{}, err
	}
	var base *Config
	if cfg.BaseOf == "" {
		if b, err := s.Base(ctx, repoName); err == nil {
			base = &b
			if err := CheckName("snapshot", BaseName(name)); err != nil {
				return Snapshot{}, fmt.Errorf("snapshot of the base of %s: %w", repoName, err)
			}
		} else if !errors.Is(err, ErrNotFound) {
			return Snapshot{}, err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Snapshot{}, fmt.Errorf("create snapshot %s: %w", name, err)
	}
	defer func() { _ = tx.Rollback() }()
	now := s.now()
	n, err := snapshotTx(ctx, tx, cfg, name, now)
	if err != nil {
		return Snapshot{}, err
	}
	sn := Snapshot{Name: name, Repo: repoName, Created: time.Unix(now.Unix(), 0).UTC(), Packages: n}
	if base != nil {
		if _, err := snapshotTx(ctx, tx, *base, BaseName(name), now); err != nil {
			return Snapshot{}, fmt.Errorf("snapshot of the base of %s: %w", repoName, err)
		}
		sn.Base = BaseName(name)
	}
	if err := tx.Commit(); err != nil {
		return Snapshot{}, fmt.Errorf("create snapshot %s: %w", name, err)
	}
	return sn, nil
}

// snapshotTx records repository cfg's package set as snapshot name in tx
// and returns how many packages it holds.
func snapshotTx(ctx context.Context, tx *sql.Tx, cfg Config, name string, now time.Time) (int, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return 0, err
	}
	var exists int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM snapshots WHERE name=?`, name).Scan(&exists); err != nil {
		return 0, fmt.Errorf("create snapshot %s: %w", name, err)
	}
	if exists > 0 {
		return 0, fmt.Errorf("snapshot %s already exists: snapshots are immutable, choose another name", name)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO snapshots (name, repo, config, created) VALUES (?, ?, ?, ?)`, name, cfg.Name, string(raw), now.Unix()); err != nil {
		return 0, fmt.Errorf("create snapshot %s: %w", name, err)
	}
	r, err := tx.ExecContext(ctx, `INSERT INTO snapshot_packages (snapshot, kind, name, version, arch, component, udeb, upload_sha256, sha256, size, path, stanza, meta, files, added)
		SELECT ?, kind, name, version, arch, component, udeb, upload_sha256, sha256, size, path, stanza, meta, files, added FROM packages WHERE repo=?`, name, cfg.Name)
	if err != nil {
		return 0, fmt.Errorf("create snapshot %s: %w", name, err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// Snapshots lists snapshots, of one repository when repoName is not empty.
func (s *Store) Snapshots(ctx context.Context, repoName string) ([]Snapshot, error) {
	rs, err := s.db.QueryContext(ctx, `SELECT s.name, s.repo, s.created, (SELECT COUNT(*) FROM snapshot_packages p WHERE p.snapshot = s.name)
		FROM snapshots s WHERE ?='' OR s.repo=? ORDER BY s.name`, repoName, repoName)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rs.Close()
	var out []Snapshot
	for rs.Next() {
		var sn Snapshot
		var created int64
		if err := rs.Scan(&sn.Name, &sn.Repo, &created, &sn.Packages); err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		sn.Created = time.Unix(created, 0).UTC()
		out = append(out, sn)
	}
	return out, rs.Err()
}

// PublishSnapshot publishes a snapshot signed under public/snapshots/<name>,
// with its own pool of hard links, so it stays whole whatever happens to
// the repository later. The snapshot of the repository's base taken with
// it is published too, under public/snapshots/<BaseName(name)>.
func (s *Store) PublishSnapshot(ctx context.Context, name string, signer Signer) (PublishResult, error) {
	if signer == nil {
		return PublishResult{}, errors.New("publish snapshot: no signing key: give --key FILE")
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return PublishResult{}, err
	}
	defer unlock()
	cfg, err := s.snapshotConfig(ctx, name)
	if err != nil {
		return PublishResult{}, err
	}
	res, err := s.publishSnapshot(ctx, name, cfg, signer)
	if err != nil || cfg.BaseOf != "" {
		return res, err
	}
	bcfg, err := s.snapshotConfig(ctx, BaseName(name))
	if errors.Is(err, ErrNotFound) || (err == nil && bcfg.BaseOf != cfg.Name) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	bres, err := s.publishSnapshot(ctx, BaseName(name), bcfg, signer)
	if err != nil {
		return res, err
	}
	res.Base = &bres
	return res, nil
}

// snapshotConfig returns the repository configuration a snapshot was taken
// with.
func (s *Store) snapshotConfig(ctx context.Context, name string) (Config, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM snapshots WHERE name=?`, name).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return Config{}, fmt.Errorf("snapshot %q: %w (see publisher snapshot list)", name, ErrNotFound)
	}
	if err != nil {
		return Config{}, fmt.Errorf("publish snapshot %s: %w", name, err)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return Config{}, fmt.Errorf("publish snapshot %s: %w", name, err)
	}
	return cfg, nil
}

func (s *Store) publishSnapshot(ctx context.Context, name string, cfg Config, signer Signer) (PublishResult, error) {
	src := rowSource{"snapshot_packages", "snapshot", name}
	fam, err := familyOf(cfg.Format)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish snapshot %s: %w", name, err)
	}
	rows, err := s.rows(ctx, src.table, src.col, src.val, fam.needsMeta())
	if err != nil {
		return PublishResult{}, err
	}
	res, err := s.publishTree(ctx, s.SnapshotDir(name), cfg, src, rows, signer)
	if err != nil {
		return res, fmt.Errorf("publish snapshot %s: %w", name, err)
	}
	return res, nil
}
