// SHA-256 of a file (swift-crypto), for the model hash in every result and the journal's
// content hash. Streams the file in 1 MiB reads, so a 170 MB checkpoint costs no memory.
import Crypto
import Foundation

public enum FileHash {
    /// Lower-case hex SHA-256 of the file's bytes.
    public static func sha256(fileAt path: String) throws -> String {
        let fd: Int32
        do { fd = try Sys.retrying { open(path, O_RDONLY | O_CLOEXEC) } } catch {
            throw PipelineError.io(path: path, reason: "cannot open for hashing: \(error)")
        }
        defer { close(fd) }
        var hasher = SHA256()
        // Not zero-filled: the intake hashes every new file, most of them far under 1 MiB.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n: Int
            do { n = try Sys.retrying { read(fd, buffer.baseAddress, buffer.count) } } catch {
                throw PipelineError.io(path: path, reason: "read failed while hashing: \(error)")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
        }
        return hex(hasher.finalize())
    }

    private static let digits = Array("0123456789abcdef".utf8)

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        var out: [UInt8] = []
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
