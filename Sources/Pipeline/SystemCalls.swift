// The Pipeline's system calls on paths, in one place: each is retried while it fails with
// EINTR (a signal arrived: SIGHUP, SIGTERM and the watchdog's timers are delivered to this
// process while files are moved), and a failure carries its errno.
import Foundation

enum Sys {
    /// A failed system call: its errno.
    struct Failure: Error, CustomStringConvertible {
        let code: Int32
        var description: String { String(cString: strerror(code)) }
    }

    /// Runs `call` (which returns -1 and sets errno on failure) until it does not fail
    /// with EINTR.
    @discardableResult
    static func retrying<T: BinaryInteger>(_ call: () -> T) throws(Failure) -> T {
        while true {
            let r = call()
            if r != -1 { return r }
            let e = errno
            if e != EINTR { throw Failure(code: e) }
        }
    }

    /// lstat(2) (links not followed) or stat(2); nil when the path cannot be examined.
    static func status(_ path: String, followingLinks: Bool = false) -> stat? {
        var st = stat()
        let ok = try? retrying { followingLinks ? stat(path, &st) : lstat(path, &st) }
        return ok == nil ? nil : st
    }

    static func link(_ from: String, _ to: String) throws(Failure) { try retrying { Glibc.link(from, to) } }

    /// unlink(2); a path that is already gone is not an error.
    static func unlink(_ path: String) throws(Failure) {
        do { try retrying { Glibc.unlink(path) } } catch where error.code == ENOENT {}
    }

    /// Whether two paths name the same inode.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        guard let sa = status(a, followingLinks: true), let sb = status(b, followingLinks: true) else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    /// F_SETLEASE (fcntl.h defines it for _GNU_SOURCE only, which Swift's Glibc does not see).
    private static let setLease: Int32 = 1024

    /// Whether a process holds `path` open for writing: the kernel refuses a read lease
    /// with EAGAIN exactly then. nil when that cannot be told: a lease needs the caller to
    /// own the file (or CAP_LEASE), and some file systems (NFS, FUSE) have none.
    static func isOpenForWriting(_ path: String) -> Bool? {
        guard let fd = try? retrying({ open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC) }) else { return nil }
        defer { close(fd) }
        if fcntl(fd, setLease, Int32(F_RDLCK)) == 0 {
            // Held for microseconds: a writer opening now waits that long for the release.
            _ = fcntl(fd, setLease, Int32(F_UNLCK))
            return false
        }
        return errno == EAGAIN ? true : nil
    }

    /// Nanoseconds since the epoch of a status's mtime.
    static func mtimeNs(_ st: stat) -> Int64 { Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec) }
}
