package rpm

import "fmt"

// Package is what a repository needs to know about one rpm file. All fields
// are plain values so that the struct round-trips through encoding/json.
type Package struct {
	Name    string `json:"name"`
	Epoch   uint32 `json:"epoch"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"`

	// SourceRPM is empty for source packages.
	SourceRPM   string `json:"source_rpm,omitempty"`
	Summary     string `json:"summary,omitempty"`
	Description string `json:"description,omitempty"`
	Packager    string `json:"packager,omitempty"`
	URL         string `json:"url,omitempty"`
	License     string `json:"license,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	Group       string `json:"group,omitempty"`
	BuildHost   string `json:"build_host,omitempty"`
	// BuildTime is in seconds since the Unix epoch.
	BuildTime int64 `json:"build_time"`

	// Checksum is the hex sha256 of the whole rpm file; repodata calls it
	// the pkgid.
	Checksum string `json:"sha256"`
	// PackageSize is the size of the rpm file in bytes.
	PackageSize int64 `json:"package_size"`
	// InstalledSize is the sum of the sizes of the packaged files.
	InstalledSize int64 `json:"installed_size"`
	// ArchiveSize is the uncompressed size of the payload.
	ArchiveSize int64 `json:"archive_size"`
	// FileTime is the file's modification time, seconds since the epoch.
	FileTime int64 `json:"file_time"`
	// Location is the path of the rpm file relative to the repository
	// directory, with forward slashes. ReadFile sets it to the file's base
	// name; callers that keep packages in subdirectories set it themselves.
	Location string `json:"location"`

	// HeaderStart and HeaderEnd are the byte range of the main header in
	// the file (from the header's magic to the start of the payload).
	HeaderStart int64 `json:"header_start"`
	HeaderEnd   int64 `json:"header_end"`

	Provides    []Dependency `json:"provides,omitempty"`
	Requires    []Dependency `json:"requires,omitempty"`
	Conflicts   []Dependency `json:"conflicts,omitempty"`
	Obsoletes   []Dependency `json:"obsoletes,omitempty"`
	Recommends  []Dependency `json:"recommends,omitempty"`
	Suggests    []Dependency `json:"suggests,omitempty"`
	Supplements []Dependency `json:"supplements,omitempty"`
	Enhances    []Dependency `json:"enhances,omitempty"`

	Files     []File           `json:"files,omitempty"`
	Changelog []ChangelogEntry `json:"changelog,omitempty"`
}

// Dependency is one provides/requires/conflicts/... entry.
type Dependency struct {
	Name string `json:"name"`
	// Flags are rpm's RPMSENSE_* bits as stored in the header.
	Flags   uint32 `json:"flags,omitempty"`
	Epoch   string `json:"epoch,omitempty"`
	Version string `json:"version,omitempty"`
	Release string `json:"release,omitempty"`
}

// FileType tells directories and ghost files apart from plain files.
type FileType string

// File types as written in filelists.xml.
const (
	FileRegular FileType = ""
	FileDir     FileType = "dir"
	FileGhost   FileType = "ghost"
)

// File is one path the package owns.
type File struct {
	Path string   `json:"path"`
	Type FileType `json:"type,omitempty"`
}

// ChangelogEntry is one %changelog entry.
type ChangelogEntry struct {
	Author string `json:"author"`
	// Date is in seconds since the Unix epoch.
	Date int64  `json:"date"`
	Text string `json:"text"`
}

// NEVRA returns name-[epoch:]version-release.arch, the way rpm and dnf name
// a package in messages.
func (p *Package) NEVRA() string {
	if p.Epoch != 0 {
		return fmt.Sprintf("%s-%d:%s-%s.%s", p.Name, p.Epoch, p.Version, p.Release, p.Arch)
	}
	return fmt.Sprintf("%s-%s-%s.%s", p.Name, p.Version, p.Release, p.Arch)
}
