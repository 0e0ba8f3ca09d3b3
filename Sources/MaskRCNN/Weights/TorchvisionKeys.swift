// Key names of torchvision's Mask R-CNN across versions. segd's model uses the names of
// current torchvision (`maskrcnn_resnet50_fpn().state_dict()`); the official 2019 COCO
// checkpoint (maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth) predates three module rewrites,
// which torchvision itself bridges in `_load_from_state_dict` when a module's recorded
// version is < 2 (checked against torchvision 0.29):
//
//   ops/feature_pyramid_network.py  FeaturePyramidNetwork: inner_blocks.i / layer_blocks.i
//       became Conv2dNormActivation → `{block}.{i}.{weight,bias}` → `{block}.{i}.0.{…}`
//   models/detection/rpn.py  RPNHead: conv became Sequential(Conv2dNormActivation)
//       → `conv.{weight,bias}` → `conv.0.0.{…}`
//   models/detection/mask_rcnn.py  MaskRCNNHeads: became Sequential(Conv2dNormActivation…)
//       → `mask_fcn{i+1}.{weight,bias}` → `{i}.0.{…}`
//
// (FrozenBatchNorm2d, ops/misc.py, drops `num_batches_tracked`; segd's loader takes each
// BatchNorm's counter with the BatchNorm instead, so a stray one is an error.) segd renames by key
// pattern instead of by version: a new-layout state dict cannot contain an old-pattern key
// (those modules are Sequentials there), and safetensors files carry no module versions.

extension StateDict {
    /// The same tensors under current torchvision names. As in torchvision, an old-name
    /// tensor replaces a new-name one if a file had both.
    public func normalizedTorchvisionKeys() -> StateDict {
        var out: [String: HostTensor] = [:]
        out.reserveCapacity(tensors.count)
        var renamed: [(String, HostTensor)] = []
        for (key, tensor) in tensors {
            if let new = TorchvisionKeys.currentName(key) {
                renamed.append((new, tensor))
            } else {
                out[key] = tensor
            }
        }
        for (key, tensor) in renamed { out[key] = tensor }
        return StateDict(tensors: out, metadata: metadata, path: path)
    }
}

enum TorchvisionKeys {
    /// The current name of an old-layout key, nil if the key is not an old-layout name.
    static func currentName(_ key: String) -> String? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let param = parts.last, param == "weight" || param == "bias" else { return nil }

        // backbone.fpn.{inner,layer}_blocks.N.{weight,bias} → backbone.fpn.{…}_blocks.N.0.{…}
        if parts.count == 5, parts[0] == "backbone", parts[1] == "fpn",
           parts[2] == "inner_blocks" || parts[2] == "layer_blocks", isIndex(parts[3]) {
            return "backbone.fpn.\(parts[2]).\(parts[3]).0.\(param)"
        }
        // rpn.head.conv.{weight,bias} → rpn.head.conv.0.0.{…}
        if parts.count == 4, parts[0] == "rpn", parts[1] == "head", parts[2] == "conv" {
            return "rpn.head.conv.0.0.\(param)"
        }
        // roi_heads.mask_head.mask_fcnK.{weight,bias} → roi_heads.mask_head.(K-1).0.{…}
        if parts.count == 4, parts[0] == "roi_heads", parts[1] == "mask_head", parts[2].hasPrefix("mask_fcn") {
            let number = String(parts[2].dropFirst("mask_fcn".count))
            if isIndex(number), let k = Int(number), k >= 1 {
                return "roi_heads.mask_head.\(k - 1).0.\(param)"
            }
        }
        return nil
    }

    /// A non-negative decimal integer as Python's str(int) writes it (no sign, no leading 0).
    private static func isIndex(_ s: String) -> Bool {
        guard let n = Int(s), n >= 0 else { return false }
        return String(n) == s
    }
}
