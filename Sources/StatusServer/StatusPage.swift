// GET /: one self-contained HTML page, plain HTML and CSS (no script, no font or style from
// anywhere else; it works offline). It refreshes itself every 5 s with a meta refresh. The
// throughput chart is an inline SVG drawn here. Every text from the journal is escaped.
import Foundation
import Pipeline

struct StatusPage {
    static let refreshSeconds = 5
    let snapshot: DaemonSnapshot
    let facts: JournalFacts?
    let journalError: String?

    func render() -> String {
        let s = snapshot
        var h = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta http-equiv="refresh" content="\(Self.refreshSeconds)">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>segd — \(s.healthProblem == nil ? "healthy" : "unhealthy")</title>
        <style>\(Self.css)</style></head><body>
        <header><h1>segd</h1>
        """
        if let p = s.healthProblem {
            h += "<span class=\"badge bad\">unhealthy</span><span class=\"why\">\(esc(p))</span>"
        } else {
            h += "<span class=\"badge ok\">\(s.ready ? "healthy" : "starting")</span>"
        }
        h += "<span class=\"meta\">"
        if let m = s.model { h += "\(esc(m.name)) · \(esc(m.backbone)) · \(esc(m.precision)) · " }
        h += "watcher \(esc(s.watcher ?? "-")) · up \(Self.duration(s.time - s.startedAt)) · pid \(s.pid)</span></header>\n<main>\n"

        // Counts.
        let counts = facts?.summary.counts ?? [:]
        h += "<section class=\"tiles\">"
        for (st, cls) in [(JobStatus.queued, "queued"), (.processing, "processing"), (.done, "done"), (.failed, "failed")] {
            h += "<div class=\"tile \(cls)\"><b>\(counts[st] ?? 0)</b><span>\(st.rawValue)</span></div>"
        }
        h += "<div class=\"tile\"><b>\(facts?.summary.duplicates ?? 0)</b><span>duplicates skipped</span></div>"
        h += "<div class=\"tile\"><b>\(String(format: "%.2f", s.throughput))</b><span>images/s (last minute)</span></div>"
        h += "</section>\n"
        if let journalError { h += "<p class=\"error\">The journal cannot be read: \(esc(journalError))</p>" }

        // Throughput chart and queues side by side.
        h += "<section class=\"row\"><div class=\"card grow\"><h2>Finished per minute, last hour</h2>"
        h += Self.chart(facts?.perMinute ?? [], now: s.time)
        h += "</div><div class=\"card\"><h2>Queues</h2><table class=\"queues\"><tr><th>stage</th><th>depth</th><th>bound</th></tr>"
        for q in s.queues {
            let frac = q.capacity.map { Double(q.depth) / Double(max(1, $0)) } ?? 0
            h += "<tr><td>\(esc(q.name))</td><td><span class=\"bar\"><i style=\"width:\(Int(min(1, frac) * 100))%\"></i></span> \(q.depth)</td><td>\(q.capacity.map(String.init) ?? "—")</td></tr>"
        }
        h += "</table><p class=\"small\">in flight: \(s.inFlight) · max batch \(s.maxBatch)</p></div></section>\n"

        // Latest results.
        h += "<section class=\"card\"><h2>Latest results</h2>"
        let recent = facts?.recent ?? []
        if recent.isEmpty { h += "<p class=\"small\">Nothing processed yet.</p>" }
        h += "<div class=\"thumbs\">"
        for e in recent {
            let outs = JobDocument.outputs(of: e)
            let name = esc((e.path as NSString).lastPathComponent)
            h += "<figure>"
            if let img = outs.firstIndex(where: JobDocument.isImage) {
                h += "<a href=\"/jobs/\(e.id)/outputs/\(img)\"><img src=\"/jobs/\(e.id)/thumbnail\" alt=\"\(name)\" loading=\"eager\"></a>"
            } else {
                h += "<div class=\"noimg\">no annotated image</div>"
            }
            h += "<figcaption><span class=\"name\" title=\"\(esc(e.path))\">\(name)</span><span class=\"links\">"
            if let img = outs.firstIndex(where: JobDocument.isImage) { h += "<a href=\"/jobs/\(e.id)/outputs/\(img)\">image</a>" }
            if let js = outs.firstIndex(where: JobDocument.isJSON) { h += "<a href=\"/jobs/\(e.id)/outputs/\(js)\">JSON</a>" }
            h += "<a href=\"/jobs/\(e.id)\">job \(e.id)</a></span>"
            h += "<span class=\"small\">\(e.finishedAt.map(Self.clock) ?? "")\(Self.totalMs(e).map { " · \($0) ms" } ?? "")</span></figcaption></figure>"
        }
        h += "</div></section>\n"

        // Failures.
        h += "<section class=\"card\"><h2>Recent failures</h2>"
        let failures = facts?.summary.recentFailures ?? []
        if failures.isEmpty {
            h += "<p class=\"small\">None.</p>"
        } else {
            h += "<table class=\"failures\"><tr><th>when</th><th>input</th><th>reason</th><th>attempts</th></tr>"
            for e in failures {
                h += "<tr><td>\(e.finishedAt.map(Self.clock) ?? "—")</td><td><a href=\"/jobs/\(e.id)\">\(esc((e.path as NSString).lastPathComponent))</a></td>"
                h += "<td class=\"reason\">\(esc(e.error ?? "no reason recorded"))</td><td>\(e.attempts)</td></tr>"
            }
            h += "</table>"
        }
        h += "</section>\n</main><footer>segd · <a href=\"/metrics\">metrics</a> · <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a> · "
        h += "<a href=\"/status\">status JSON</a> · refreshes every \(Self.refreshSeconds) s · \(Self.clock(s.time))</footer></body></html>\n"
        return h
    }

    func esc(_ s: String) -> String { Self.escape(s) }

    static func escape(_ s: String) -> String {
        var o = ""
        o.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&#39;"
            default: o.append(c)
            }
        }
        return o
    }

    static func totalMs(_ e: JournalEntry) -> Int? {
        guard let t = e.timings, let d = try? JSONDecoder().decode([String: Double].self, from: Data(t.utf8)), !d.isEmpty else { return nil }
        return Int(d.values.reduce(0, +).rounded())
    }

    static func clock(_ t: Double) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func duration(_ s: Double) -> String {
        let s = Int(max(0, s))
        if s < 120 { return "\(s) s" }
        if s < 7200 { return "\(s / 60) min" }
        if s < 172_800 { return "\(s / 3600) h" }
        return "\(s / 86400) d"
    }

    /// Stacked bars (done, failed) per minute as inline SVG, with a y scale and time marks.
    static func chart(_ buckets: [FinishedCount], now: Double) -> String {
        let w = 720.0, h = 180.0, left = 40.0, bottom = 22.0, top = 8.0
        let plotW = w - left - 8, plotH = h - bottom - top
        let peak = max(1, buckets.map { $0.done + $0.failed }.max() ?? 1)
        let scale = Self.niceCeiling(peak)
        let n = max(1, buckets.count)
        let bw = plotW / Double(n)
        var svg = "<svg class=\"chart\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"images finished per minute over the last hour\">"
        for i in 0...4 {
            let v = Double(scale) * Double(i) / 4, y = top + plotH - plotH * Double(i) / 4
            svg += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - 8)\" y2=\"\(y)\" class=\"grid\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v))</text>"
        }
        for (i, b) in buckets.enumerated() {
            let x = left + Double(i) * bw + 1
            let dh = plotH * Double(b.done) / Double(scale), fh = plotH * Double(b.failed) / Double(scale)
            if b.done > 0 {
                svg += "<rect class=\"done\" x=\"\(f(x))\" y=\"\(f(top + plotH - dh))\" width=\"\(f(max(1, bw - 2)))\" height=\"\(f(dh))\"><title>\(b.done) done</title></rect>"
            }
            if b.failed > 0 {
                svg += "<rect class=\"failed\" x=\"\(f(x))\" y=\"\(f(top + plotH - dh - fh))\" width=\"\(f(max(1, bw - 2)))\" height=\"\(f(fh))\"><title>\(b.failed) failed</title></rect>"
            }
        }
        for m in [60, 45, 30, 15, 0] {
            let x = left + plotW * Double(60 - m) / 60
            let anchor = m == 60 ? "start" : m == 0 ? "end" : "middle"
            svg += "<text x=\"\(f(x))\" y=\"\(Int(h - 6))\" text-anchor=\"\(anchor)\">\(m == 0 ? "now" : "−\(m) min")</text>"
        }
        svg += "</svg><p class=\"legend\"><i class=\"done\"></i>done <i class=\"failed\"></i>failed · peak \(peak)/min</p>"
        return svg
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func niceCeiling(_ v: Int) -> Int {
        var step = 1
        while true {
            for m in [1, 2, 5] where step * m * 4 >= v { return step * m * 4 }
            step *= 10
        }
    }

    static let css = """
    :root{--bg:#f5f6f8;--card:#fff;--ink:#1d2330;--muted:#6b7385;--ok:#1f9d55;--bad:#d64545;--q:#8a6d1f;--p:#2b6cb0;--line:#e3e6ec}
    *{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:var(--bg);color:var(--ink)}
    header{display:flex;align-items:center;gap:12px;flex-wrap:wrap;padding:12px 20px;background:#1d2330;color:#fff}
    header h1{margin:0;font-size:20px;letter-spacing:.5px}.meta{color:#b8bfcc;font-size:13px;margin-left:auto}
    .badge{padding:2px 10px;border-radius:10px;font-weight:600;font-size:12px;text-transform:uppercase}.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
    .why{color:#ffd2d2}main{padding:16px 20px;max-width:1280px;margin:0 auto}
    .tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;margin-bottom:16px}
    .tile{background:var(--card);border-radius:8px;padding:12px 14px;border-left:4px solid var(--line)}.tile b{display:block;font-size:26px}.tile span{color:var(--muted)}
    .tile.queued{border-color:var(--q)}.tile.processing{border-color:var(--p)}.tile.done{border-color:var(--ok)}.tile.failed{border-color:var(--bad)}
    .row{display:flex;gap:16px;flex-wrap:wrap}.grow{flex:1 1 520px}.card{background:var(--card);border-radius:8px;padding:12px 16px;margin-bottom:16px}
    h2{font-size:15px;margin:0 0 10px}.chart{width:100%;height:auto}.chart text{font-size:11px;fill:var(--muted)}.chart .grid{stroke:var(--line)}
    .chart .done,.legend .done{fill:var(--ok);background:var(--ok)}.chart .failed,.legend .failed{fill:var(--bad);background:var(--bad)}
    .legend{margin:4px 0 0;color:var(--muted);font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px;vertical-align:-1px}
    table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--muted);font-weight:500}
    .bar{display:inline-block;width:60px;height:8px;background:var(--line);border-radius:4px;overflow:hidden;vertical-align:middle}.bar i{display:block;height:100%;background:var(--p)}
    .thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
    figure{margin:0;background:#fafbfc;border:1px solid var(--line);border-radius:6px;overflow:hidden}
    figure img{display:block;width:100%;height:150px;object-fit:contain;background:#222}.noimg{height:150px;display:flex;align-items:center;justify-content:center;color:var(--muted)}
    figcaption{padding:6px 8px;display:flex;flex-direction:column;gap:2px}.name{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
    .links a{margin-right:8px}a{color:var(--p)}.small{color:var(--muted);font-size:12px}.reason{color:var(--bad);font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-word}
    .error{color:var(--bad)}footer{color:var(--muted);font-size:12px;text-align:center;padding:10px 0 20px}
    """
}
