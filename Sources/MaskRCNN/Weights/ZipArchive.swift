// The zip container of torch.save (PyTorch ≥ 1.6), read from the mapped file without a zip
// library: PyTorch writes every entry STORED (uncompressed, data aligned to 64 bytes) so
// that tensors can be used in place, which is also what makes this reader small. Zip64
// records are honoured: PyTorch always writes the zip64 end record, and checkpoints over
// 4 GiB need the zip64 sizes and offsets.
//
// Layout read here (APPNOTE.TXT 4.3): local header + data per entry, …, central directory
// (one record per entry, with sizes and the local header's offset), [zip64 end record,
// zip64 locator], end-of-central-directory record (+ comment).

struct ZipArchive {
    struct Entry {
        let name: String
        /// Where the entry's bytes start in the file, past the local header.
        let dataOffset: Int
        let size: Int
    }

    /// Entries in central-directory order.
    let entries: [Entry]
    private let index: [String: Int]

    func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    private enum Signature {
        static let localHeader: UInt32 = 0x0403_4B50
        static let centralHeader: UInt32 = 0x0201_4B50
        static let endOfCentralDirectory: UInt32 = 0x0605_4B50
        static let zip64End: UInt32 = 0x0606_4B50
        static let zip64Locator: UInt32 = 0x0706_4B50
    }

    init(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        let r = LittleEndianReader(bytes: bytes)
        func invalid(_ entry: String?, _ reason: String) -> WeightsError {
            .invalidZip(path: path, entry: entry, reason: reason)
        }

        // The end record is 22 bytes plus a comment of up to 65535 bytes, so it is found by
        // scanning back from the end; a truncated file has lost it.
        var eocd = -1
        var candidate = bytes.count - 22
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        while candidate >= lowest {
            if r.u32(candidate) == Signature.endOfCentralDirectory,
               let commentLength = r.u16(candidate + 20), candidate + 22 + Int(commentLength) <= bytes.count {
                eocd = candidate
                break
            }
            candidate -= 1
        }
        guard eocd >= 0 else {
            throw WeightsError.truncated(path: path, reason:
                "no zip end-of-central-directory record in the last \(min(bytes.count, 22 + 0xFFFF)) bytes "
                + "(the zip archive was cut short or is not one)")
        }
        var entryCount = Int(r.u16(eocd + 10)!)
        var directorySize = Int(r.u32(eocd + 12)!)
        var directoryOffset = Int(r.u32(eocd + 16)!)
        guard r.u16(eocd + 4) == 0, r.u16(eocd + 6) == 0, r.u16(eocd + 8) == r.u16(eocd + 10) else {
            throw WeightsError.unsupported(path: path, reason: "multi-volume zip archives are not supported")
        }

        // Zip64: a locator right before the end record points to the zip64 end record,
        // whose 64-bit counts replace the 16/32-bit fields (which then read 0xFFFF…).
        if eocd >= 20, r.u32(eocd - 20) == Signature.zip64Locator {
            let recordOffset = r.u64(eocd - 20 + 8)!
            guard recordOffset <= UInt64(eocd), r.u32(Int(recordOffset)) == Signature.zip64End else {
                throw invalid(nil, "the zip64 locator points to offset \(recordOffset), where there is no zip64 end record")
            }
            let z = Int(recordOffset)
            guard let count = r.u64(z + 32), let size = r.u64(z + 40), let offset = r.u64(z + 48),
                  count <= UInt64(bytes.count), size <= UInt64(bytes.count), offset <= UInt64(bytes.count) else {
                throw invalid(nil, "the zip64 end record at offset \(z) is cut short or holds sizes beyond the file")
            }
            entryCount = Int(count)
            directorySize = Int(size)
            directoryOffset = Int(offset)
        } else if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            throw invalid(nil, "the end record defers to a zip64 record that is missing")
        }
        guard r.contains(directoryOffset, directorySize) else {
            throw WeightsError.truncated(path: path, reason:
                "the zip central directory [\(directoryOffset), \(directoryOffset + directorySize)) lies beyond the file's \(bytes.count) bytes")
        }

        var entries: [Entry] = []
        var index: [String: Int] = [:]
        entries.reserveCapacity(entryCount)
        var p = directoryOffset
        for i in 0 ..< entryCount {
            guard r.u32(p) == Signature.centralHeader, let nameLength = r.u16(p + 28),
                  let extraLength = r.u16(p + 30), let commentLength = r.u16(p + 32),
                  r.contains(p, 46 + Int(nameLength) + Int(extraLength) + Int(commentLength)) else {
                throw invalid(nil, "central directory record \(i) of \(entryCount) at offset \(p) is missing or cut short")
            }
            let name = String(decoding: r.slice(p + 46, Int(nameLength))!, as: UTF8.self)
            let flags = r.u16(p + 8)!
            let method = r.u16(p + 10)!
            var compressedSize = UInt64(r.u32(p + 20)!)
            var size = UInt64(r.u32(p + 24)!)
            var localOffset = UInt64(r.u32(p + 42)!)

            // Zip64 extended information (header ID 1): 64-bit values, present only for
            // the fields that read 0xFFFFFFFF, in this order.
            var e = p + 46 + Int(nameLength)
            let extraEnd = e + Int(extraLength)
            while e + 4 <= extraEnd {
                let id = r.u16(e)!, length = Int(r.u16(e + 2)!)
                guard e + 4 + length <= extraEnd else { throw invalid(name, "an extra field runs past its record") }
                if id == 0x0001 {
                    var f = e + 4
                    func next() throws -> UInt64 {
                        guard f + 8 <= e + 4 + length else { throw invalid(name, "the zip64 extra field is too short") }
                        defer { f += 8 }
                        return r.u64(f)!
                    }
                    if size == 0xFFFF_FFFF { size = try next() }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = try next() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                }
                e += 4 + length
            }

            guard flags & 0x1 == 0 else { throw WeightsError.unsupported(path: path, reason: "entry '\(name)' is encrypted") }
            guard method == 0 else {
                let kind = method == 8 ? "deflate" : "method \(method)"
                throw invalid(name, "the entry is compressed (\(kind)); torch.save stores entries uncompressed, "
                    + "so this archive was repacked by another tool: re-save it with torch.save")
            }
            guard compressedSize == size else {
                throw invalid(name, "a stored entry has compressed size \(compressedSize) but size \(size)")
            }

            // The local header repeats the name and may carry a different extra field (PyTorch
            // pads it so that the data is 64-byte aligned), so the data offset comes from it.
            guard localOffset < UInt64(bytes.count), r.u32(Int(localOffset)) == Signature.localHeader,
                  let localNameLength = r.u16(Int(localOffset) + 26), let localExtraLength = r.u16(Int(localOffset) + 28) else {
                throw WeightsError.truncated(path: path, reason: "the local header of zip entry '\(name)' at offset \(localOffset) is missing")
            }
            let dataOffset = Int(localOffset) + 30 + Int(localNameLength) + Int(localExtraLength)
            guard size <= UInt64(Int.max), r.contains(dataOffset, Int(size)) else {
                throw WeightsError.truncated(path: path, reason:
                    "zip entry '\(name)' needs bytes [\(dataOffset), \(UInt64(dataOffset) &+ size)) but the file has \(bytes.count)")
            }
            guard index[name] == nil else { throw invalid(name, "the archive holds two entries of this name") }
            index[name] = entries.count
            entries.append(Entry(name: name, dataOffset: dataOffset, size: Int(size)))
            p += 46 + Int(nameLength) + Int(extraLength) + Int(commentLength)
        }
        self.entries = entries
        self.index = index
    }
}
