package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/api/agent"
)

// File type names of the preprocessed CopyFile input.
const (
	FileRegular   = "Regular"
	FileDirectory = "Directory"
	FileSymlink   = "Symlink"
	FileUnknown   = "Unknown"
)

const (
	sIFMT  = 0o170000
	sIFREG = 0o100000
	sIFDIR = 0o040000
	sIFLNK = 0o120000
)

// requestInput is the policy input of req, built lazily (LazyInput; pass
// it through irvm.Whole before giving it to anything but irvm).
// CopyFileRequest is preprocessed as Kata does: the policy sees
// PolicyCopyFileRequest (file type from the S_IFMT bits of file_mode, the
// symlink target from data, no data).
// The input's values come from enc, which must not be reset while the
// input is in use.
func requestInput(req proto.Message, enc *encoder) (ast.Value, error) {
	if cf, ok := req.(*agent.CopyFileRequest); ok {
		return copyFileInput(cf)
	}
	return enc.lazyMessage(req.ProtoReflect()).Value, nil
}

func copyFileInput(r *agent.CopyFileRequest) (ast.Value, error) {
	ft := FileUnknown
	target := ""
	switch r.GetFileMode() & sIFMT {
	case sIFREG:
		ft = FileRegular
	case sIFDIR:
		ft = FileDirectory
	case sIFLNK:
		ft = FileSymlink
		target = string(r.GetData())
		for _, c := range target {
			if c == 0 {
				return nil, fmt.Errorf("symlink target of %s has a NUL byte", r.GetPath())
			}
		}
	}
	return ast.NewObject(
		ast.Item(ast.StringTerm("path"), ast.StringTerm(r.GetPath())),
		ast.Item(ast.StringTerm("file_type"), ast.StringTerm(ft)),
		ast.Item(ast.StringTerm("symlink_target"), ast.StringTerm(target)),
		ast.Item(ast.StringTerm("file_size"), intTerm(r.GetFileSize())),
		ast.Item(ast.StringTerm("file_mode"), intTerm(int64(r.GetFileMode()))),
		ast.Item(ast.StringTerm("dir_mode"), intTerm(int64(r.GetDirMode()))),
		ast.Item(ast.StringTerm("uid"), intTerm(int64(r.GetUid()))),
		ast.Item(ast.StringTerm("gid"), intTerm(int64(r.GetGid()))),
		ast.Item(ast.StringTerm("offset"), intTerm(r.GetOffset())),
	), nil
}
