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
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { b in try Sys.retrying { read(fd, b.baseAddress, b.count) } } } catch {
                throw PipelineError.io(path: path, reason: "read failed while hashing: \(error)")
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
        }
        return hex(hasher.finalize())
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
