package rpc

import (
	"io"
	"net"
)

// smallFrame is the size up to which WriteRequest/WriteResponse assemble the
// frame into one buffer and issue a single Write; larger frames go out as
// net.Buffers (writev on a TCP connection) so the payload is not copied.
const smallFrame = 4096

// ReadRequestHeader reads the 9-byte request header: the command byte and
// the u64 payload size. It does not validate the command (use Cmd.Valid) or
// the size (use Cmd.RequestSize and the decoders). It returns io.EOF if the
// stream ended cleanly before the first byte, io.ErrUnexpectedEOF if it ended
// inside the header.
func ReadRequestHeader(r io.Reader) (Cmd, uint64, error) {
	var h [RequestHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	return Cmd(h[0]), le.Uint64(h[1:]), nil
}

// AppendRequestHeader appends a request header for cmd with the given
// payload size to b.
func AppendRequestHeader(b []byte, cmd Cmd, size uint64) []byte {
	b = append(b, byte(cmd))
	return le.AppendUint64(b, size)
}

// WriteRequest writes one request frame: the header for cmd with the total
// size of the payload parts, then the parts in order. Small frames are
// written with one Write; larger ones with net.Buffers, which is a single
// writev on a *net.TCPConn and avoids copying the payload.
func WriteRequest(w io.Writer, cmd Cmd, payload ...[]byte) error {
	var hdr [RequestHeaderSize]byte
	hdr[0] = byte(cmd)
	return writeFrame(w, hdr[:], hdr[1:], payload)
}

// ReadResponseHeader reads the 8-byte response header (the payload size).
func ReadResponseHeader(r io.Reader) (uint64, error) {
	var h [ResponseHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	return le.Uint64(h[:]), nil
}

// WriteResponse writes one response frame: the u64 total size of the
// payload parts, then the parts. With no parts it writes an empty response
// (8 zero bytes), as FREE_BUFFER, BUFFER_CLEAR and INIT_TENSOR expect.
func WriteResponse(w io.Writer, payload ...[]byte) error {
	var hdr [ResponseHeaderSize]byte
	return writeFrame(w, hdr[:], hdr[:], payload)
}

// writeFrame fills sizeField with the total payload length and writes hdr
// followed by the parts.
func writeFrame(w io.Writer, hdr, sizeField []byte, parts [][]byte) error {
	var total uint64
	for _, p := range parts {
		total += uint64(len(p))
	}
	le.PutUint64(sizeField, total)
	if total == 0 {
		_, err := w.Write(hdr)
		return err
	}
	if total > smallFrame {
		bufs := make(net.Buffers, 0, len(parts)+1)
		bufs = append(bufs, hdr)
		for _, p := range parts {
			if len(p) > 0 {
				bufs = append(bufs, p)
			}
		}
		_, err := bufs.WriteTo(w)
		return err
	}
	b := make([]byte, 0, len(hdr)+int(total))
	b = append(b, hdr...)
	for _, p := range parts {
		b = append(b, p...)
	}
	_, err := w.Write(b)
	return err
}
