// Lays out compact JSON for people: objects and arrays of containers one entry per line,
// indented by two spaces; arrays of scalars (boxes, sizes, polygon coordinates) on one
// line. JSONEncoder's .prettyPrinted puts every number of a polygon on its own line, which
// makes a result with contours tens of thousands of lines long.
//
// Works on the encoder's compact output token by token, so numbers and strings keep their
// exact text; it only adds whitespace between tokens.
enum JSONLayout {
    static func pretty(_ json: [UInt8]) -> [UInt8] {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        let openObject = UInt8(ascii: "{"), closeObject = UInt8(ascii: "}")
        let openArray = UInt8(ascii: "["), closeArray = UInt8(ascii: "]")
        let comma = UInt8(ascii: ","), colon = UInt8(ascii: ":"), space = UInt8(ascii: " ")
        var out: [UInt8] = []
        out.reserveCapacity(json.count + json.count / 4)
        var multiline: [Bool] = []  // per open container
        var level = 0
        func newline() {
            out.append(10)
            out.append(contentsOf: repeatElement(space, count: 2 * level))
        }
        var i = 0
        let n = json.count
        while i < n {
            let c = json[i]
            switch c {
            case quote:
                let start = i
                i += 1
                while i < n, json[i] != quote {
                    i += json[i] == backslash ? 2 : 1
                }
                out.append(contentsOf: json[start...min(i, n - 1)])
            case openObject, openArray:
                let next = i + 1 < n ? json[i + 1] : 0
                if next == closeObject || next == closeArray {
                    out.append(c)
                    out.append(next)
                    i += 1
                } else {
                    let multi = c == openObject || next == openObject || next == openArray
                    multiline.append(multi)
                    out.append(c)
                    if multi {
                        level += 1
                        newline()
                    }
                }
            case closeObject, closeArray:
                if multiline.popLast() == true {
                    level -= 1
                    newline()
                }
                out.append(c)
            case comma:
                out.append(c)
                if multiline.last == true { newline() } else { out.append(space) }
            case colon:
                out.append(c)
                out.append(space)
            default:
                out.append(c)
            }
            i += 1
        }
        return out
    }
}
