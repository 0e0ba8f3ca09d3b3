// Reading an input file whole, bounded. Inputs arrive from a watched folder that anyone
// may write to, so the path can name a FIFO (open would block forever), a directory, a
// device (/dev/zero never ends) or a file larger than memory: each is an error here,
// before a single byte is decoded.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

enum FileReader {
    /// The file's bytes. Symlinks are followed (a watched folder of links is a normal
    /// setup), but what they lead to must be a regular file of 1...maxBytes bytes.
    static func read(path: String, maxBytes: Int) throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO without a writer would otherwise block this thread
        // forever; on a regular file the flag has no effect on read(2).
        let fd = try posix(path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        defer { _ = close(fd) }

        var info = stat()
        _ = try posix(path) { fstat(fd, &info) }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw ImagingError.notARegularFile(file: path, kind: describeFileType(kind))
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw ImagingError.emptyFile(file: path) }
        guard size <= maxBytes else { throw ImagingError.fileTooLarge(file: path, bytes: size, limit: maxBytes) }

        // Read at most the size fstat reported: a file still growing is the Intake's
        // stable-file check to catch; a file that shrank comes back short and the decoder
        // reports it truncated.
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var done = 0
            while done < size {
                let n = systemRead(fd, buffer.baseAddress! + done, size - done)
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    failure = errno
                    break
                }
            }
            count = done
        }
        if failure != 0 { throw ImagingError.readFailed(file: path, reason: errorString(failure)) }
        return bytes
    }

    /// Runs a POSIX call that returns -1 and sets errno on failure, retrying EINTR; the one
    /// place where the module turns errno into an error.
    private static func posix(_ path: String, _ call: () -> Int32) throws -> Int32 {
        while true {
            let result = call()
            if result != -1 { return result }
            let code = errno
            if code == EINTR { continue }
            throw ImagingError.cannotOpen(file: path, reason: errorString(code))
        }
    }

    private static func describeFileType(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "file type \(String(kind, radix: 8))"
        }
    }
}

/// read(2); named apart because inside a type `read` means the type's own method.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

func errorString(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}
