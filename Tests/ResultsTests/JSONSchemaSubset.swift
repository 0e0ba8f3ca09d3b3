import Foundation

// A JSON value with exact types, for checking JSON text structurally.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    static func parse(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }

    subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        return nil
    }

    var object: [String: JSONValue]? { if case let .object(o) = self { return o } else { return nil } }
    var array: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }
    var string: String? { if case let .string(s) = self { return s } else { return nil } }
    var number: Double? { if case let .number(d) = self { return d } else { return nil } }
}

/// The subset of JSON Schema draft 2020-12 that docs/results-schema.json uses: type, const,
/// enum, required, properties, additionalProperties (false or a schema), items, minItems,
/// maxItems, minimum, maximum, minLength, pattern, and local $ref into $defs. Annotation
/// keywords are ignored; any other keyword is reported as unsupported, so the schema
/// cannot grow a constraint that this validator silently skips.
struct JSONSchemaSubset {
    let root: JSONValue

    static let annotations: Set<String> = ["$schema", "$id", "$defs", "title", "description"]
    static let supported: Set<String> = ["type", "const", "enum", "required", "properties", "additionalProperties",
                                         "items", "minItems", "maxItems", "minimum", "maximum", "minLength",
                                         "pattern", "$ref"]

    /// Validation errors as "path: message"; empty when `value` is valid.
    func errors(_ value: JSONValue) -> [String] {
        var out: [String] = []
        check(value, against: root, at: "$", into: &out)
        return out
    }

    private func resolve(_ ref: String) -> JSONValue? {
        guard ref.hasPrefix("#/") else { return nil }
        var node: JSONValue? = root
        for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
        return node
    }

    private func check(_ value: JSONValue, against schema: JSONValue, at path: String, into out: inout [String]) {
        guard let s = schema.object else { out.append("\(path): schema is not an object"); return }
        for key in s.keys where !Self.supported.contains(key) && !Self.annotations.contains(key) {
            out.append("\(path): unsupported schema keyword \(key)")
        }
        if let ref = s["$ref"]?.string {
            guard let target = resolve(ref) else { out.append("\(path): unresolved $ref \(ref)"); return }
            check(value, against: target, at: path, into: &out)
        }
        if let type = s["type"]?.string, !Self.matches(value, type: type) {
            out.append("\(path): expected \(type), got \(value)")
            return
        }
        if let c = s["const"], c != value { out.append("\(path): expected const \(c), got \(value)") }
        if let e = s["enum"]?.array, !e.contains(value) { out.append("\(path): \(value) not in enum \(e)") }
        if case let .number(d) = value {
            if let m = s["minimum"]?.number, d < m { out.append("\(path): \(d) < minimum \(m)") }
            if let m = s["maximum"]?.number, d > m { out.append("\(path): \(d) > maximum \(m)") }
        }
        if case let .string(str) = value {
            if let m = s["minLength"]?.number, Double(str.count) < m { out.append("\(path): shorter than \(m)") }
            if let p = s["pattern"]?.string {
                let re = try! NSRegularExpression(pattern: p)
                if re.firstMatch(in: str, range: NSRange(str.startIndex..., in: str)) == nil {
                    out.append("\(path): '\(str.prefix(40))' does not match \(p)")
                }
            }
        }
        if case let .array(items) = value {
            if let m = s["minItems"]?.number, Double(items.count) < m { out.append("\(path): fewer than \(m) items") }
            if let m = s["maxItems"]?.number, Double(items.count) > m { out.append("\(path): more than \(m) items") }
            if let itemSchema = s["items"] {
                for (i, item) in items.enumerated() { check(item, against: itemSchema, at: "\(path)[\(i)]", into: &out) }
            }
        }
        if case let .object(o) = value {
            for key in s["required"]?.array?.compactMap(\.string) ?? [] where o[key] == nil {
                out.append("\(path): missing required key \(key)")
            }
            let props = s["properties"]?.object ?? [:]
            for (key, v) in o.sorted(by: { $0.key < $1.key }) {
                if let p = props[key] {
                    check(v, against: p, at: "\(path).\(key)", into: &out)
                } else if let extra = s["additionalProperties"] {
                    if extra == .bool(false) { out.append("\(path): unexpected key \(key)") }
                    else { check(v, against: extra, at: "\(path).\(key)", into: &out) }
                }
            }
        }
    }

    private static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null),
             ("number", .number):
            return true
        case let ("integer", .number(d)):
            return d.rounded() == d
        default:
            return false
        }
    }
}
