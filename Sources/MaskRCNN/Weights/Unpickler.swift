// A restricted unpickler: the pickle subset that torch.save writes for a state dict, and
// nothing that can run code. Python's pickle calls whatever GLOBAL names (`os.system`,
// `builtins.eval`, …) when it REDUCEs; here GLOBAL resolves only a fixed whitelist of
// names to inert tags, and REDUCE/NEWOBJ/BUILD interpret those tags themselves: an
// OrderedDict, a tensor rebuilt from a storage reference, a storage dtype. Anything else
// is refused at the GLOBAL opcode, before its arguments are even read.
//
// Opcodes (pickletools names) of protocols 2–5 that a state dict uses are implemented;
// others are an error naming the opcode and its byte offset.

/// The Python globals a state dict references. Nothing here executes anything.
enum PickleGlobal: Equatable, Sendable {
    /// collections.OrderedDict: state_dict() returns one.
    case orderedDict
    /// torch._utils._rebuild_tensor_v2 (and the pre-1.0 _rebuild_tensor): a view of a storage.
    case rebuildTensor
    /// torch._utils._rebuild_parameter: an nn.Parameter around a tensor (checkpoints that
    /// pickled parameters instead of state_dict()'s detached tensors).
    case rebuildParameter
    /// torch.FloatStorage, torch.HalfStorage, …: names the dtype of a persistent storage.
    case storageType(WeightDType)

    static func lookup(module: String, name: String) -> PickleGlobal? {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch", _): return WeightDType(torchStorage: name).map { .storageType($0) }
        default: return nil
        }
    }
}

/// A storage a tensor views, as the persistent-load hook of a checkpoint format resolves it.
/// Its bytes are found later by `key` (legacy files store them after the pickle).
struct StorageRef {
    let key: String
    let dtype: WeightDType
    /// Elements into the stored storage where this one starts (legacy storage views), and
    /// how many elements it has.
    let elementOffset: Int
    let elementCount: Int
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, …)`, not yet materialized.
struct TensorRef {
    let storage: StorageRef
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// A Python object as far as a state-dict pickle needs. Lists and dicts are classes because
/// pickle mutates them after they are memoized (SETITEMS on a BINGET of them), and every
/// reference must see the change, as in Python.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer outside Int's range (torch's legacy magic number), as the little-endian
    /// two's-complement bytes LONG1/LONG4 carry.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(StorageRef)
    case tensor(TensorRef)

    /// For error messages: the Python type a user would recognize.
    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global: return "class or function"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    var string: String? { if case let .string(s) = self { return s } else { return nil } }
    var int: Int? { if case let .int(i) = self { return i } else { return nil } }
    var tuple: [PickleValue]? { if case let .tuple(t) = self { return t } else { return nil } }
    var dict: PickleDict? { if case let .dict(d) = self { return d } else { return nil } }
}

final class PickleList {
    var items: [PickleValue] = []
}

/// An insertion-ordered dict. Keys are compared only when they are strings (all a state dict
/// has); a repeated string key replaces the value in place, as in Python.
final class PickleDict {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var stringIndex: [String: Int] = [:]
    /// BUILD's state: an OrderedDict's instance `__dict__`, where state_dict() keeps `_metadata`.
    var state: PickleValue?

    var count: Int { keys.count }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case let .string(s) = key {
            if let i = stringIndex[s] { values[i] = value; return }
            stringIndex[s] = keys.count
        }
        keys.append(key)
        values.append(value)
    }

    subscript(key: String) -> PickleValue? { stringIndex[key].map { values[$0] } }
}

struct Unpickler {
    let bytes: UnsafeRawBufferPointer
    let path: String
    /// Names the pickle in errors ("archive/data.pkl", "main pickle").
    let stream: String
    private(set) var position: Int
    let end: Int

    /// Reads one pickle that starts at `start` and must end (STOP) before `end`.
    init(bytes: UnsafeRawBufferPointer, start: Int, end: Int, path: String, stream: String) {
        self.bytes = bytes
        self.position = start
        self.end = end
        self.path = path
        self.stream = stream
    }

    private func fail(_ offset: Int, _ reason: String) -> WeightsError {
        .invalidPickle(path: path, stream: stream, offset: offset, reason: reason)
    }

    private mutating func take(_ n: Int, _ opOffset: Int, _ opName: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= end - position else {
            let reason = "the pickle \(stream) ends inside \(opName) at byte \(opOffset) (needs \(n) more bytes, \(end - position) left)"
            // A pickle that runs to the end of the file was cut short; one inside a zip
            // entry is malformed.
            if end == bytes.count { throw WeightsError.truncated(path: path, reason: reason) }
            throw fail(opOffset, "\(opName) needs \(n) bytes but only \(end - position) remain in the pickle")
        }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position ..< position + n])
    }

    private mutating func uint(_ n: Int, _ opOffset: Int, _ opName: String) throws -> UInt64 {
        let b = try take(n, opOffset, opName)
        var v: UInt64 = 0
        for i in stride(from: n - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        return v
    }

    private mutating func length(_ n: Int, _ opOffset: Int, _ opName: String) throws -> Int {
        let v = try uint(n, opOffset, opName)
        guard v <= UInt64(end - position) else {
            let reason = "\(opName) at byte \(opOffset) announces \(v) bytes but only \(end - position) remain"
            if end == bytes.count { throw WeightsError.truncated(path: path, reason: "the pickle \(stream): \(reason)") }
            throw fail(opOffset, reason)
        }
        return Int(v)
    }

    private func utf8(_ b: UnsafeRawBufferPointer, _ opOffset: Int) throws -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw fail(opOffset, "a string is not valid UTF-8") }
        return s
    }

    /// Reads a newline-terminated line (GLOBAL's operands).
    private mutating func line(_ opOffset: Int) throws -> String {
        var n = 0
        while position + n < end && bytes[position + n] != 0x0A { n += 1 }
        // Without a newline, take() reports the pickle as cut short.
        let text = try take(n + 1, opOffset, "GLOBAL")
        return try utf8(UnsafeRawBufferPointer(rebasing: text[0 ..< n]), opOffset)
    }

    /// LONG1/LONG4 operand: little-endian two's complement of any length.
    private func long(_ b: UnsafeRawBufferPointer) -> PickleValue {
        let n = b.count
        guard n > 0 else { return .int(0) }
        let negative = b[n - 1] & 0x80 != 0
        // Longer than 8 bytes still fits in Int when the extra bytes only repeat the sign.
        if n > 8 && !(b[8...].allSatisfy { $0 == (negative ? 0xFF : 0x00) } && (b[7] & 0x80 != 0) == negative) {
            return .bigInt(Array(b))
        }
        let width = min(n, 8)
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        if width < 8 && negative { v |= ~0 << UInt64(width * 8) }
        return .int(Int(bitPattern: UInt(v)))
    }

    /// Runs the pickle to its STOP opcode. `persistentLoad` resolves BINPERSID ids (the
    /// storages of a checkpoint); it receives the id and the opcode's byte offset.
    mutating func load(persistentLoad: (PickleValue, Int) throws -> PickleValue) throws -> PickleValue {
        var stack: [PickleValue] = []
        /// Stack heights at each MARK.
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]

        func pop(_ at: Int) throws -> PickleValue {
            // Values below the last MARK belong to an enclosing opcode.
            guard stack.count > (marks.last ?? 0) else { throw fail(at, "an opcode pops more values than were pushed") }
            return stack.removeLast()
        }
        func top(_ at: Int) throws -> PickleValue {
            guard let v = stack.last, stack.count > (marks.last ?? 0) else { throw fail(at, "an opcode needs a value on an empty stack") }
            return v
        }
        func popMark(_ at: Int) throws -> [PickleValue] {
            guard let m = marks.popLast() else { throw fail(at, "an opcode needs a MARK that was never pushed") }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }
        func memoKey(_ v: UInt64, _ at: Int) throws -> Int {
            guard v <= UInt64(Int32.max) else { throw fail(at, "memo index \(v) is out of range") }
            return Int(v)
        }

        while true {
            let at = position
            guard position < end else {
                let reason = "the pickle \(stream) ends at byte \(position) without a STOP opcode"
                if end == bytes.count { throw WeightsError.truncated(path: path, reason: reason) }
                throw fail(at, "no STOP opcode before the end of the pickle")
            }
            let op = bytes[position]
            position += 1
            switch op {
            case 0x80: // PROTO
                let v = try uint(1, at, "PROTO")
                guard v >= 2 && v <= 5 else { throw fail(at, "pickle protocol \(v) is not one torch.save writes (2–5)") }
            case 0x95: // FRAME: protocol 4 framing is transparent to a reader of the whole stream.
                _ = try uint(8, at, "FRAME")
            case 0x2E: // STOP
                return try pop(at)

            case 0x28: marks.append(stack.count) // MARK
            case 0x30: // POP: a value, or the mark itself if nothing was pushed since it
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop(at) }
            case 0x31: _ = try popMark(at) // POP_MARK
            case 0x32: stack.append(try top(at)) // DUP

            case 0x4E: stack.append(.none) // NONE
            case 0x88: stack.append(.bool(true)) // NEWTRUE
            case 0x89: stack.append(.bool(false)) // NEWFALSE
            case 0x4A: // BININT: signed 32-bit
                stack.append(.int(Int(Int32(bitPattern: UInt32(try uint(4, at, "BININT"))))))
            case 0x4B: stack.append(.int(Int(try uint(1, at, "BININT1"))))
            case 0x4D: stack.append(.int(Int(try uint(2, at, "BININT2"))))
            case 0x8A: // LONG1
                let n = try length(1, at, "LONG1")
                stack.append(long(try take(n, at, "LONG1")))
            case 0x8B: // LONG4
                let n = try length(4, at, "LONG4")
                stack.append(long(try take(n, at, "LONG4")))
            case 0x47: // BINFLOAT: big-endian IEEE double
                let b = try take(8, at, "BINFLOAT")
                var v: UInt64 = 0
                for i in 0 ..< 8 { v = v << 8 | UInt64(b[i]) }
                stack.append(.float(Double(bitPattern: v)))

            case 0x58: stack.append(.string(try utf8(take(try length(4, at, "BINUNICODE"), at, "BINUNICODE"), at)))
            case 0x8C: stack.append(.string(try utf8(take(try length(1, at, "SHORT_BINUNICODE"), at, "SHORT_BINUNICODE"), at)))
            case 0x8D: stack.append(.string(try utf8(take(try length(8, at, "BINUNICODE8"), at, "BINUNICODE8"), at)))
            // Python 2 str (BINSTRING/SHORT_BINSTRING); torch.load decodes them as UTF-8 too.
            case 0x54: stack.append(.string(try utf8(take(try length(4, at, "BINSTRING"), at, "BINSTRING"), at)))
            case 0x55: stack.append(.string(try utf8(take(try length(1, at, "SHORT_BINSTRING"), at, "SHORT_BINSTRING"), at)))
            case 0x42: stack.append(.bytes(Array(try take(try length(4, at, "BINBYTES"), at, "BINBYTES"))))
            case 0x43: stack.append(.bytes(Array(try take(try length(1, at, "SHORT_BINBYTES"), at, "SHORT_BINBYTES"))))
            case 0x8E: stack.append(.bytes(Array(try take(try length(8, at, "BINBYTES8"), at, "BINBYTES8"))))

            case 0x7D: stack.append(.dict(PickleDict())) // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList())) // EMPTY_LIST
            case 0x29: stack.append(.tuple([])) // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark(at))) // TUPLE
            case 0x85: stack.append(.tuple([try pop(at)])) // TUPLE1
            case 0x86: // TUPLE2
                let b = try pop(at), a = try pop(at)
                stack.append(.tuple([a, b]))
            case 0x87: // TUPLE3
                let c = try pop(at), b = try pop(at), a = try pop(at)
                stack.append(.tuple([a, b, c]))
            case 0x6C: // LIST
                let list = PickleList()
                list.items = try popMark(at)
                stack.append(.list(list))
            case 0x64: // DICT
                let items = try popMark(at)
                guard items.count % 2 == 0 else { throw fail(at, "DICT with an odd number of items") }
                let dict = PickleDict()
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
                stack.append(.dict(dict))

            case 0x61: // APPEND
                let v = try pop(at)
                guard case let .list(list) = try top(at) else { throw fail(at, "APPEND to a \(try top(at).typeName)") }
                list.items.append(v)
            case 0x65: // APPENDS
                let items = try popMark(at)
                guard case let .list(list) = try top(at) else { throw fail(at, "APPENDS to a \(try top(at).typeName)") }
                list.items.append(contentsOf: items)
            case 0x73: // SETITEM
                let v = try pop(at), k = try pop(at)
                guard case let .dict(dict) = try top(at) else { throw fail(at, "SETITEM on a \(try top(at).typeName)") }
                dict.set(k, v)
            case 0x75: // SETITEMS
                let items = try popMark(at)
                guard items.count % 2 == 0 else { throw fail(at, "SETITEMS with an odd number of items") }
                guard case let .dict(dict) = try top(at) else { throw fail(at, "SETITEMS on a \(try top(at).typeName)") }
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }

            case 0x71: memo[try memoKey(try uint(1, at, "BINPUT"), at)] = try top(at) // BINPUT
            case 0x72: memo[try memoKey(try uint(4, at, "LONG_BINPUT"), at)] = try top(at) // LONG_BINPUT
            case 0x94: memo[memo.count] = try top(at) // MEMOIZE
            case 0x68, 0x6A: // BINGET, LONG_BINGET
                let key = try memoKey(try uint(op == 0x68 ? 1 : 4, at, "BINGET"), at)
                guard let v = memo[key] else { throw fail(at, "memo entry \(key) is read before it is written") }
                stack.append(v)

            case 0x63: // GLOBAL "module\nname\n"
                let module = try line(at), name = try line(at)
                stack.append(.global(try resolve(module, name, at)))
            case 0x93: // STACK_GLOBAL
                let name = try pop(at), module = try pop(at)
                guard let m = module.string, let n = name.string else { throw fail(at, "STACK_GLOBAL operands are not strings") }
                stack.append(.global(try resolve(m, n, at)))

            case 0x52: // REDUCE: callable(*args)
                let args = try pop(at), callable = try pop(at)
                guard case let .global(g) = callable, let a = args.tuple else {
                    throw fail(at, "REDUCE of a \(callable.typeName) with \(args.typeName) arguments")
                }
                stack.append(try call(g, a, at))
            case 0x81: // NEWOBJ: cls.__new__(cls, *args)
                let args = try pop(at), cls = try pop(at)
                guard case .global(.orderedDict) = cls, args.tuple?.isEmpty == true else {
                    throw fail(at, "NEWOBJ of a \(cls.typeName) is not supported")
                }
                stack.append(.dict(PickleDict()))
            case 0x92: // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                let kwargs = try pop(at), args = try pop(at), cls = try pop(at)
                guard case .global(.orderedDict) = cls, args.tuple?.isEmpty == true, kwargs.dict?.count == 0 else {
                    throw fail(at, "NEWOBJ_EX of a \(cls.typeName) is not supported")
                }
                stack.append(.dict(PickleDict()))
            case 0x62: // BUILD: obj.__setstate__(state), here only an OrderedDict's __dict__
                let state = try pop(at)
                guard case let .dict(dict) = try top(at), state.dict != nil else {
                    throw fail(at, "BUILD of a \(try top(at).typeName) with a \(state.typeName) state is not supported")
                }
                dict.state = state
            case 0x51: // BINPERSID
                stack.append(try persistentLoad(try pop(at), at))

            default:
                throw fail(at, "opcode 0x\(String(op, radix: 16)) is not one a state dict uses")
            }
        }
    }

    private func resolve(_ module: String, _ name: String, _ at: Int) throws -> PickleGlobal {
        guard let g = PickleGlobal.lookup(module: module, name: name) else {
            throw WeightsError.forbiddenGlobal(path: path, stream: stream, offset: at, global: "\(module).\(name)")
        }
        return g
    }

    /// REDUCE of a whitelisted global: builds the value Python would, without running anything.
    private func call(_ g: PickleGlobal, _ args: [PickleValue], _ at: Int) throws -> PickleValue {
        switch g {
        case .orderedDict:
            guard args.isEmpty else { throw fail(at, "OrderedDict called with \(args.count) arguments") }
            return .dict(PickleDict())
        case .rebuildTensor:
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            guard args.count >= 4, case let .storage(storage) = args[0], let offset = args[1].int,
                  let size = args[2].tuple, let stride = args[3].tuple else {
                throw fail(at, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, …)")
            }
            let shape = size.compactMap(\.int), strides = stride.compactMap(\.int)
            guard shape.count == size.count, strides.count == stride.count else {
                throw fail(at, "_rebuild_tensor_v2 size or stride holds a non-integer")
            }
            return .tensor(TensorRef(storage: storage, offset: offset, shape: shape, strides: strides))
        case .rebuildParameter:
            guard let first = args.first, case .tensor = first else {
                throw fail(at, "_rebuild_parameter is not called with a tensor")
            }
            return first
        case .storageType:
            throw fail(at, "a storage type is called directly, which torch.save never writes")
        }
    }
}
