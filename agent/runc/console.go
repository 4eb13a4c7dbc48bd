package runc

import (
	"context"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// ConsoleSocket is a unix socket runc sends a TTY process's pty master to.
type ConsoleSocket struct {
	ln   *net.UnixListener
	path string
}

// NewConsoleSocket listens on path.
func NewConsoleSocket(path string) (*ConsoleSocket, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &ConsoleSocket{ln: ln, path: path}, nil
}

// Path is the socket's path, for --console-socket.
func (c *ConsoleSocket) Path() string { return c.path }

// Close stops listening and removes the socket.
func (c *ConsoleSocket) Close() error { return c.ln.Close() }

// ReceiveMaster waits for runc's connection and returns the pty master it sends.
func (c *ConsoleSocket) ReceiveMaster(ctx context.Context) (*os.File, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.ln.SetDeadline(dl)
	}
	conn, err := c.ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket: accept: %w", err)
	}
	defer conn.Close()
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: read: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: no control message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: no pty fd (%v)", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// Resize sets the window size of a pty master.
func Resize(master *os.File, rows, cols uint16) error {
	ws := &unix.Winsize{Row: rows, Col: cols}
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("resize tty: %w", err)
	}
	return nil
}
