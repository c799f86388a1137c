package agent

import (
	cpb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	"github.com/kiln-build/kiln/worker/executor"
)

var roles = map[cpb.SourceRole]string{cpb.SourceRole_SOURCE_ROLE_COMBINED: "combined", cpb.SourceRole_SOURCE_ROLE_CODE: "code", cpb.SourceRole_SOURCE_ROLE_PACKAGING: "packaging"}

func roleToPB(r string) cpb.SourceRole {
	for k, v := range roles {
		if v == r {
			return k
		}
	}
	return cpb.SourceRole_SOURCE_ROLE_UNSPECIFIED
}

func buildFromPB(b *cpb.PackageBuild) *executor.PackageBuild {
	out := &executor.PackageBuild{Release: b.GetRelease(), Target: b.GetTarget(), Package: b.GetPackage(), Recipe: b.GetRecipe(),
		Revision: b.GetRevision(), VersionSuffix: b.GetVersionSuffix(), Sealed: b.GetSealed(), Profiles: b.GetBuildProfiles(), Options: b.GetBuildOptions()}
	for _, s := range b.GetSources() {
		out.Sources = append(out.Sources, executor.Source{URL: s.GetUrl(), Commit: s.GetCommit(), Ref: s.GetRef(), Role: roles[s.GetRole()]})
	}
	for _, p := range b.GetPinnedPackages() {
		out.Pinned = append(out.Pinned, executor.Package{Name: p.GetName(), Version: p.GetVersion(), Architecture: p.GetArchitecture()})
	}
	return out
}

func recordToPB(r *executor.Record) *cpb.BuildRecord {
	out := &cpb.BuildRecord{ChrootDigest: r.ChrootDigest, Commands: r.Commands, Version: r.Version, SourceLayout: r.SourceLayout}
	for _, s := range r.Sources {
		out.Sources = append(out.Sources, &cpb.Source{Url: s.URL, Commit: s.Commit, Ref: s.Ref, Role: roleToPB(s.Role)})
	}
	for _, p := range r.Installed {
		out.Installed = append(out.Installed, &cpb.InstalledPackage{Name: p.Name, Version: p.Version, Architecture: p.Architecture})
	}
	return out
}
