"""Table 1's storage multiplier, derived from a generated net (paper §3.1, docs/paper.md §1.2)."""

from __future__ import annotations

# Layers that keep a map's resolution and work pixel by pixel: a skip through them keeps their smallest width.
PER_PIXEL = {"BatchNorm", "Scale", "ReLU", "Crop", "Dropout"}


def storage_multiplier(param, channels: dict[str, int]) -> int:
    """Table 1's storage multiplier from the architecture (paper §3.1, docs/paper.md §1.2).

    The paper counts, for the first-layer encoder feature map only, what the decoder must keep from the encoder,
    in units of one float32 channel at that resolution (64 maps = 11 MB = 64 x 0.17 MB; the pooling indices cost
    0.17 MB, one unit). So, at the first Pooling layer:
      * float maps kept: its value top feeds a layer other than the next encoder layer (a skip). Following the
        skip through per-pixel layers (1x1 convolution, BatchNorm, Scale, ReLU, Crop, Dropout) the smallest channel
        count along the chain is what needs keeping (FCN-Basic keeps the 11-channel 1x1 reduction: 11);
      * else indices kept (its mask top is used, SegNet): 1;
      * else nothing kept: 0 (the paper writes "n/a" for FCN-Basic-NoAddition and 0 for the other two; a Crop
        that only takes the encoder map's shape keeps nothing).
    Skips and indices together count as the float maps (the paper: EncoderAddition = 64, not 65).
    """
    layers = list(param.layer)
    first = next((i for i, l in enumerate(layers) if l.type == "Pooling"), None)
    if first is None:
        return 0
    pool = layers[first]
    later = layers[first + 1:]

    def consumers(blob: str):
        # Readers of the blob's values: a Crop's second bottom only lends its shape; in-place layers keep channels.
        return [l for l in later if blob in (l.bottom[:1] if l.type == "Crop" else l.bottom) and l.top[:1] != [blob]]

    kept = 0
    for layer in consumers(pool.top[0])[1:]:  # the first consumer is the encoder's next layer; the rest are skips
        c = channels.get(pool.top[0], 0)
        while layer.type in PER_PIXEL or (layer.type == "Convolution"
                                          and list(layer.convolution_param.kernel_size[:1]) == [1]):
            c = min(c, channels.get(layer.top[0], c))
            nxt = consumers(layer.top[0])
            if len(nxt) != 1 or nxt[0].bottom[0] != layer.top[0]:
                break
            layer = nxt[0]
        kept = max(kept, c)
    if kept:
        return kept
    return 1 if len(pool.top) > 1 and consumers(pool.top[1]) else 0
