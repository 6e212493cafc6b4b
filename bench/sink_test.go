package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssAnon is this process's resident anonymous memory, in bytes.
func rssAnon(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssAnon in /proc/self/status")
	return 0
}

func startTestSink(t *testing.T, n int, fresh bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go Sink(ln, n, fresh)
	return ln.Addr().String()
}

// The fresh sink keeps every transfer in memory of its own until the
// connection ends, which is what makes it the floor of an upload.
func TestSinkFreshKeepsTransfersUntilClose(t *testing.T) {
	const chunk, transfers = 16 << 20, 4
	addr := startTestSink(t, chunk, true)
	l, err := newLoopback(addr, chunk)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	for i := range l.buf {
		l.buf[i] = byte(i%251) + 1
	}
	before := rssAnon(t)
	for i := 0; i < transfers; i++ {
		if err := l.sendFresh(chunk - i*4096); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if l.ack[0] != l.buf[0] {
			t.Fatalf("transfer %d acknowledged with %d, want its first byte %d", i, l.ack[0], l.buf[0])
		}
	}
	held := rssAnon(t) - before
	if held < transfers*chunk*9/10 {
		t.Fatalf("the sink holds %d MiB after %d transfers of 16 MiB; want them all kept", held>>20, transfers)
	}
	l.close()
	deadline := time.Now().Add(5 * time.Second)
	for rssAnon(t)-before > chunk {
		if time.Now().After(deadline) {
			t.Fatalf("still %d MiB held 5 s after the connection ended", (rssAnon(t)-before)>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A length the sink cannot take ends the connection instead of a transfer.
func TestSinkFreshRefusesBadLengths(t *testing.T) {
	const chunk = 1 << 20
	addr := startTestSink(t, chunk, true)
	for _, n := range []uint64{0, chunk + 1, 1 << 63} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], n)
		if _, err := c.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); !errors.Is(err, io.EOF) {
			t.Errorf("length %d: read %v, want the sink to close the connection", n, err)
		}
		c.Close()
	}
}
