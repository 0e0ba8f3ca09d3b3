import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func systemWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buf, n)
    #else
    Darwin.write(fd, buf, n)
    #endif
}

/// Files that appear complete or not at all: data goes to a temporary file in the target's
/// directory, is fsync'ed, and is renamed over the target; then the directory is fsync'ed so
/// the rename survives a crash. Readers (and a watcher on the output folder) never see a
/// half-written result.
public enum AtomicFile {
    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        let file = try AppendingFile(creatingTemporaryFor: path)
        do {
            try file.write(data)
            try file.commit()
        } catch {
            file.discard()
            throw error
        }
    }

    /// `mkdir -p` of the directory that will hold `path`.
    public static func createParentDirectory(of path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        guard !dir.isEmpty else { return }
        var prefix = dir.hasPrefix("/") ? "/" : ""
        for part in dir.split(separator: "/") {
            prefix += part
            if mkdir(prefix, 0o755) != 0 {
                let e = errno
                var st = stat()
                guard e == EEXIST, stat(prefix, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                    throw ResultsError.io(path: prefix, operation: "mkdir", errno: e)
                }
            }
            prefix += "/"
        }
    }
}

/// A file written front to back under a temporary name, then committed by rename.
/// Owned by one writer at a time (callers serialize access).
final class AppendingFile {
    let path: String
    let temporaryPath: String
    private var fd: Int32

    /// Creates `<dir>/.<name>.XXXXXX` (unique, mode 0644) for writing.
    init(creatingTemporaryFor path: String) throws {
        try AtomicFile.createParentDirectory(of: path)
        self.path = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let pattern = Array((dir + "/." + url.lastPathComponent + ".XXXXXX").utf8CString)
        var template = pattern
        var fd: Int32
        // mkstemp's open(2) can fail with EINTR (a signal during an open on NFS or FUSE); it
        // may leave the Xs replaced, so each try starts from the pattern again.
        repeat {
            template = pattern
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            throw ResultsError.io(path: path, operation: "create temporary file", errno: errno)
        }
        self.fd = fd
        self.temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        _ = fchmod(fd, 0o644)
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporaryPath)
        }
    }

    func write(_ data: Data) throws {
        guard fd >= 0 else { throw ResultsError.writerFinished(path: path) }
        try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < buf.count {
                let n = try retryingEINTR(path: temporaryPath, operation: "write") {
                    systemWrite(fd, buf.baseAddress! + offset, buf.count - offset)
                }
                offset += n
            }
        }
    }

    func write(_ string: String) throws { try write(Data(string.utf8)) }

    /// fsync, close, rename over `path`, fsync the directory.
    func commit() throws {
        guard fd >= 0 else { throw ResultsError.writerFinished(path: path) }
        _ = try retryingEINTR(path: temporaryPath, operation: "fsync") { fsync(fd) }
        // close(2) is never retried: on Linux the descriptor is released even when it reports
        // EINTR, and a retry could close a descriptor another thread just opened.
        let closed = close(fd)
        fd = -1
        guard closed == 0 else {
            let e = errno
            unlink(temporaryPath)
            throw ResultsError.io(path: temporaryPath, operation: "close", errno: e)
        }
        guard rename(temporaryPath, path) == 0 else {
            let e = errno
            unlink(temporaryPath)
            throw ResultsError.io(path: path, operation: "rename", errno: e)
        }
        let dir = (path as NSString).deletingLastPathComponent
        var dfd: Int32
        repeat { dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } while dfd < 0 && errno == EINTR
        if dfd >= 0 {
            // Best effort: some file systems refuse fsync on directories; EINTR is retried.
            while fsync(dfd) != 0 && errno == EINTR {}
            close(dfd)
        }
    }

    /// Closes and removes the temporary file.
    func discard() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(temporaryPath)
    }
}

/// Runs a system call until it does not fail with EINTR; a failure becomes `ResultsError.io`.
@discardableResult
func retryingEINTR<T: BinaryInteger>(path: String, operation: String, _ call: () -> T) throws -> Int {
    while true {
        let r = call()
        if r >= 0 { return Int(r) }
        let e = errno
        if e == EINTR { continue }
        throw ResultsError.io(path: path, operation: operation, errno: e)
    }
}
