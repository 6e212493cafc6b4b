package cache

import "syscall"

type statfs struct{ total uint64 }

func statFS(dir string, st *statfs) error {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return err
	}
	st.total = s.Blocks * uint64(s.Bsize)
	return nil
}
