// PyTorch checkpoints (torch.save of a state dict), both formats:
//
// zip (torch ≥ 1.6): `<archive>/data.pkl` is the pickled state dict; each storage it
//   references by persistent id ('storage', torch.FloatStorage, key, location, numel) is
//   the stored entry `<archive>/data/<key>`, raw little-endian elements.
// legacy (torch < 1.6, e.g. torchvision's 2019 maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth):
//   consecutive pickles — magic number, format version 1001, sys info, the state dict
//   (persistent ids ('storage', type, root_key, location, numel, view_metadata)), the
//   sorted list of storage keys — then, per key in that order, an int64 LE element count
//   and the storage's raw bytes. See `_legacy_save` in torch/serialization.py.
//
// Tensors are views of storages (offset, sizes, strides, possibly sharing one storage), and
// are materialized row-major here.

enum TorchCheckpointReader {
    /// 0x1950a86a20f9469cfc6c, the legacy format's first pickle, as LONG1's LE bytes.
    private static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    private static let legacyFormatVersion = 1001
    /// Largest view allowed to exceed its storage's element count (64 Mi floats, 256 MB).
    static let maxExpandedElements = 1 << 26

    // MARK: zip

    static func readZip(_ bytes: UnsafeRawBufferPointer, path: String) throws -> StateDict {
        let archive = try ZipArchive(bytes, path: path)
        // The archive's top folder is named after the file torch.save wrote ("archive" for
        // buffers), so it is found, not assumed.
        let pickles = archive.entries.filter {
            let parts = $0.name.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl" && !parts[0].isEmpty
        }
        guard pickles.count == 1, let pickle = pickles.first else {
            let names = archive.entries.prefix(8).map(\.name).joined(separator: ", ")
            let reason = pickles.isEmpty
                ? "no '<archive>/data.pkl' entry, so this zip is not a torch.save checkpoint (entries: \(names.isEmpty ? "none" : names))"
                : "several data.pkl entries: \(pickles.map(\.name).joined(separator: ", "))"
            throw WeightsError.invalidZip(path: path, entry: nil, reason: reason)
        }
        let prefix = String(pickle.name.dropLast("/data.pkl".count))
        if let order = archive.entry("\(prefix)/byteorder") {
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[order.dataOffset ..< order.dataOffset + order.size]), as: UTF8.self)
            guard text == "little" else {
                throw WeightsError.unsupported(path: path, reason: "storages are '\(text)'-endian; only little-endian checkpoints are read")
            }
        }

        var storages: [String: StorageRef] = [:]
        var unpickler = Unpickler(bytes: bytes, start: pickle.dataOffset, end: pickle.dataOffset + pickle.size,
                                  path: path, stream: pickle.name)
        let top = try unpickler.load { pid, at in
            guard let t = pid.tuple, t.count == 5, t[0].string == "storage", case let .global(.storageType(dtype)) = t[1],
                  let key = t[2].string, let numel = t[4].int, numel >= 0 else {
                throw WeightsError.invalidPickle(path: path, stream: pickle.name, offset: at,
                    reason: "a persistent id is not ('storage', storage type, key, location, numel)")
            }
            if let known = storages[key] {
                guard known.dtype == dtype, known.elementCount == numel else {
                    throw WeightsError.invalidPickle(path: path, stream: pickle.name, offset: at,
                        reason: "storage '\(key)' is referenced as \(known.elementCount) \(known.dtype.rawValue) and as \(numel) \(dtype.rawValue)")
                }
                return .storage(known)
            }
            let name = "\(prefix)/data/\(key)"
            guard let entry = archive.entry(name) else {
                throw WeightsError.invalidZip(path: path, entry: name, reason: "storage '\(key)' referenced by \(pickle.name) is missing")
            }
            guard case let (needed, false) = numel.multipliedReportingOverflow(by: dtype.size), entry.size >= needed else {
                throw WeightsError.invalidZip(path: path, entry: name, reason:
                    "the entry holds \(entry.size) bytes but its storage is \(numel) elements of \(dtype.rawValue)")
            }
            let ref = StorageRef(key: key, dtype: dtype, elementOffset: 0, elementCount: numel)
            storages[key] = ref
            return .storage(ref)
        }
        return try stateDict(from: top, path: path) { key in
            archive.entry("\(prefix)/data/\(key)").map {
                UnsafeRawBufferPointer(rebasing: bytes[$0.dataOffset ..< $0.dataOffset + $0.size])
            }
        }
    }

    // MARK: legacy

    static func readLegacy(_ bytes: UnsafeRawBufferPointer, path: String) throws -> StateDict {
        var position = 0
        func next(_ stream: String, _ persistentLoad: (PickleValue, Int) throws -> PickleValue) throws -> (PickleValue, Int) {
            let start = position
            var unpickler = Unpickler(bytes: bytes, start: position, end: bytes.count, path: path, stream: stream)
            let value = try unpickler.load(persistentLoad: persistentLoad)
            position = unpickler.position
            return (value, start)
        }
        func noStorages(_ stream: String) -> (PickleValue, Int) throws -> PickleValue {
            { _, at in throw WeightsError.invalidPickle(path: path, stream: stream, offset: at, reason: "a storage reference where none belongs") }
        }

        let (magic, _) = try next("magic number", noStorages("magic number"))
        guard case let .bigInt(b) = magic, b == legacyMagic else {
            throw WeightsError.unrecognizedFormat(path: path, reason:
                "it is a Python pickle, but not a torch.save checkpoint (its first value is a \(magic.typeName), not torch's magic number)")
        }
        let (version, versionAt) = try next("format version", noStorages("format version"))
        guard version.int == legacyFormatVersion else {
            throw WeightsError.unsupported(path: path, reason:
                "legacy checkpoint format version \(version.int.map(String.init) ?? version.typeName) at byte \(versionAt) (only \(legacyFormatVersion) is known)")
        }
        let (sysInfo, _) = try next("sys info", noStorages("sys info"))
        if case let .bool(little)? = sysInfo.dict?["little_endian"], !little {
            throw WeightsError.unsupported(path: path, reason: "the checkpoint was written on a big-endian machine")
        }

        // Root storages by key: element type and count, as the main pickle references them.
        var roots: [String: (dtype: WeightDType, count: Int)] = [:]
        let mainStream = "main pickle (state dict)"
        let (top, _) = try next(mainStream) { pid, at in
            func bad(_ reason: String) -> WeightsError {
                .invalidPickle(path: path, stream: mainStream, offset: at, reason: reason)
            }
            guard let t = pid.tuple, t.count == 6, t[0].string == "storage", case let .global(.storageType(dtype)) = t[1],
                  let key = t[2].string, let numel = t[4].int, numel >= 0 else {
                throw bad("a persistent id is not ('storage', storage type, key, location, numel, view)")
            }
            if let known = roots[key], known.dtype != dtype || known.count != numel {
                throw bad("storage '\(key)' is referenced as \(known.count) \(known.dtype.rawValue) and as \(numel) \(dtype.rawValue)")
            }
            roots[key] = (dtype, numel)
            // view_metadata (view_key, offset, size): a storage that is a slice of the root one.
            switch t[5] {
            case .none:
                return .storage(StorageRef(key: key, dtype: dtype, elementOffset: 0, elementCount: numel))
            case let .tuple(view) where view.count == 3:
                guard let offset = view[1].int, let size = view[2].int, offset >= 0, size >= 0, offset <= numel, size <= numel - offset else {
                    throw bad("storage view of '\(key)' does not fit in its \(numel) elements")
                }
                return .storage(StorageRef(key: key, dtype: dtype, elementOffset: offset, elementCount: size))
            default:
                throw bad("storage view metadata is a \(t[5].typeName), not None or (key, offset, size)")
            }
        }
        let keyStream = "storage key list"
        let (keysValue, keysAt) = try next(keyStream, noStorages(keyStream))
        let keyItems: [PickleValue]
        if case let .list(list) = keysValue { keyItems = list.items } else { keyItems = [keysValue] }
        let keys = keyItems.compactMap(\.string)
        guard case .list = keysValue, keys.count == keyItems.count else {
            throw WeightsError.invalidPickle(path: path, stream: keyStream, offset: keysAt, reason: "it is a \(keysValue.typeName), not a list of str")
        }

        // The storages follow, each as an int64 LE element count and the raw elements.
        let reader = LittleEndianReader(bytes: bytes)
        var storageBytes: [String: UnsafeRawBufferPointer] = [:]
        for key in keys {
            guard let root = roots[key] else {
                throw WeightsError.invalidPickle(path: path, stream: keyStream, offset: keysAt,
                    reason: "storage '\(key)' is listed but no tensor references it, so its element type is unknown")
            }
            guard let rawCount = reader.u64(position) else {
                throw WeightsError.truncated(path: path, reason:
                    "the element count of storage '\(key)' should be at byte \(position) but the file ends at \(bytes.count)")
            }
            guard rawCount <= UInt64(Int.max / root.dtype.size), Int(rawCount) >= root.count else {
                throw WeightsError.invalidTensor(path: path, key: "storage \(key)", reason:
                    "the file says it holds \(rawCount) elements, the state dict references \(root.count)")
            }
            let length = Int(rawCount) * root.dtype.size
            guard let data = reader.slice(position + 8, length) else {
                throw WeightsError.truncated(path: path, reason:
                    "storage '\(key)' (\(rawCount) elements of \(root.dtype.rawValue)) needs bytes "
                    + "[\(position + 8), \(position + 8 + length)) but the file ends at \(bytes.count)")
            }
            storageBytes[key] = data
            position += 8 + length
        }
        return try stateDict(from: top, path: path) { storageBytes[$0] }
    }

    // MARK: shared

    /// The tensors of the unpickled object: a dict of name → tensor, or a training
    /// checkpoint that wraps one under "state_dict" or "model".
    private static func stateDict(from top: PickleValue, path: String,
                                  storage: (String) -> UnsafeRawBufferPointer?) throws -> StateDict {
        guard case let .dict(root) = top else {
            throw WeightsError.notAStateDict(path: path, reason: "the pickled object is a \(top.typeName), not a dict of tensors")
        }
        func allTensors(_ d: PickleDict) -> Bool { d.values.allSatisfy { if case .tensor = $0 { true } else { false } } }
        var dict = root
        if !allTensors(root), let inner = ["state_dict", "model"].lazy.compactMap({ root[$0]?.dict }).first {
            dict = inner
        }

        var tensors: [String: HostTensor] = [:]
        tensors.reserveCapacity(dict.count)
        for (k, v) in zip(dict.keys, dict.values) {
            guard let key = k.string else {
                throw WeightsError.notAStateDict(path: path, reason: "a key is a \(k.typeName), not a str")
            }
            guard case let .tensor(t) = v else {
                throw WeightsError.notAStateDict(path: path, reason: "the value of '\(key)' is a \(v.typeName), not a tensor")
            }
            tensors[key] = try materialize(t, key: key, bytes: storage(t.storage.key), path: path)
        }

        // state_dict() records each module's version in OrderedDict._metadata, restored by BUILD.
        var metadata: [String: String] = [:]
        if let modules = dict.state?.dict?["_metadata"]?.dict {
            for (m, fields) in zip(modules.keys, modules.values) {
                guard let module = m.string, let fields = fields.dict else { continue }
                for (f, value) in zip(fields.keys, fields.values) {
                    guard let field = f.string, let text = scalarText(value) else { continue }
                    metadata["_metadata/\(module)/\(field)"] = text
                }
            }
        }
        return StateDict(tensors: tensors, metadata: metadata, path: path)
    }

    private static func scalarText(_ v: PickleValue) -> String? {
        switch v {
        case let .int(i): return String(i)
        case let .bool(b): return b ? "True" : "False"
        case let .float(d): return String(d)
        case let .string(s): return s
        case .none: return "None"
        default: return nil
        }
    }

    /// Copies a (possibly strided, offset, shared) view of a storage into a row-major tensor,
    /// after checking that every element it can reach lies inside the storage.
    private static func materialize(_ t: TensorRef, key: String, bytes: UnsafeRawBufferPointer?, path: String) throws -> HostTensor {
        func bad(_ reason: String) -> WeightsError { .invalidTensor(path: path, key: key, reason: reason) }
        let dtype = t.storage.dtype
        guard t.shape.count == t.strides.count else {
            throw bad("size \(t.shape) and stride \(t.strides) have different ranks")
        }
        guard let count = WeightsLayout.elementCount(t.shape) else { throw bad("size \(t.shape) is negative or too large") }
        guard t.offset >= 0, t.strides.allSatisfy({ $0 >= 0 }) else {
            throw bad("storage offset \(t.offset) or stride \(t.strides) is negative")
        }
        var values: [Float] = []
        if count > 0 {
            // The highest element index the view reaches (every size is ≥ 1 here).
            var last = t.offset
            for (n, s) in zip(t.shape, t.strides) {
                let (step, o1) = (n - 1).multipliedReportingOverflow(by: s)
                let (sum, o2) = last.addingReportingOverflow(step)
                guard !o1, !o2 else { throw bad("size \(t.shape) with stride \(t.strides) overflows") }
                last = sum
            }
            guard last < t.storage.elementCount else {
                throw bad("the view (offset \(t.offset), size \(t.shape), stride \(t.strides)) reaches element \(last) "
                    + "of storage '\(t.storage.key)', which has \(t.storage.elementCount)")
            }
            // Zero strides (expand) let a view have more elements than its storage; a few
            // bytes of a crafted file could then demand terabytes. Real state dicts hold no
            // such views beyond small broadcasts.
            guard count <= t.storage.elementCount || count <= Self.maxExpandedElements else {
                throw bad("the view (size \(t.shape), stride \(t.strides)) has \(count) elements, "
                    + "more than its storage's \(t.storage.elementCount) and than \(Self.maxExpandedElements)")
            }
            guard let bytes, let base = bytes.baseAddress,
                  (t.storage.elementOffset + last + 1) * dtype.size <= bytes.count else {
                throw bad("storage '\(t.storage.key)' is missing or shorter than the view needs")
            }
            values = dtype.gather(from: base, offset: t.storage.elementOffset + t.offset, shape: t.shape, strides: t.strides)
        }
        return HostTensor(shape: t.shape, values: values, sourceDType: dtype.rawValue)
    }
}
