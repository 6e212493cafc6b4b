package leakcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// netns is a network namespace joined to this host by a veth pair. The head
// of a vanish cycle runs inside it; cutting the namespace's end of the link
// drops its traffic without a FIN or RST, so only the workers' TCP keepalive
// can notice.
type netns struct {
	name             string
	hostLink, nsLink string
	hostIP, peerIP   string
}

func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetns(ctx context.Context) (*netns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("no ip command: %v", err)
	}
	pid := os.Getpid()
	n := pid % 250
	ns := &netns{
		name:     fmt.Sprintf("boxlc%d", pid),
		hostLink: fmt.Sprintf("blh%d", pid),
		nsLink:   fmt.Sprintf("blp%d", pid),
		hostIP:   fmt.Sprintf("10.214.%d.1", n),
		peerIP:   fmt.Sprintf("10.214.%d.2", n),
	}
	steps := [][]string{
		{"netns", "add", ns.name},
		{"link", "add", ns.hostLink, "type", "veth", "peer", "name", ns.nsLink},
		{"link", "set", ns.nsLink, "netns", ns.name},
		{"addr", "add", ns.hostIP + "/30", "dev", ns.hostLink},
		{"link", "set", ns.hostLink, "up"},
		{"netns", "exec", ns.name, "ip", "addr", "add", ns.peerIP + "/30", "dev", ns.nsLink},
		{"netns", "exec", ns.name, "ip", "link", "set", ns.nsLink, "up"},
		{"netns", "exec", ns.name, "ip", "link", "set", "lo", "up"},
		// Workers on other addresses of this host are reached through the host end.
		{"netns", "exec", ns.name, "ip", "route", "add", "default", "via", ns.hostIP},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			ns.close()
			return nil, err
		}
	}
	return ns, nil
}

// cut takes the namespace's end of the link down, from inside the namespace.
func (ns *netns) cut() error {
	return ipCmd(context.Background(), "netns", "exec", ns.name, "ip", "link", "set", ns.nsLink, "down")
}

// restore brings it back up (with its default route) for the next cycle.
func (ns *netns) restore() error {
	if err := ipCmd(context.Background(), "netns", "exec", ns.name, "ip", "link", "set", ns.nsLink, "up"); err != nil {
		return err
	}
	return ipCmd(context.Background(), "netns", "exec", ns.name, "ip", "route", "replace", "default", "via", ns.hostIP)
}

// close removes the namespace and both ends of the link; errors are ignored
// because parts may not exist.
func (ns *netns) close() {
	exec.Command("ip", "netns", "del", ns.name).Run()
	exec.Command("ip", "link", "del", ns.hostLink).Run()
}
