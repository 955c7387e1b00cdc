"""Architectures from papers' block tables, as :class:`~tinypatch.frontends.spec.NetSpec`.

- MnasNet-A1 (Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
  CVPR 2019, Fig. 7(a)): 224x224; conv 3x3/2 32; SepConv 3x3 16 (depthwise + 1x1, no expand);
  MBConv6 3x3 24 x2 /2; MBConv3 5x5 SE 40 x3 /2; MBConv6 3x3 80 x4 /2; MBConv6 3x3 SE 112 x2;
  MBConv6 5x5 SE 160 x3 /2; MBConv6 3x3 320 x1; conv 1x1 1280, pool, FC. ReLU. The SE
  squeeze width here is the builder's (expanded channels / 4, rounded to 8), not MnasNet's
  (block input / 4): the SE ops run after the patch stage and cost < 0.1% of the MACs.
- FBNet-A (Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable
  NAS", CVPR 2019, Fig. 4; facebookresearch/mobile-vision ``fbnet_a``): 224x224; conv 3x3/2 16;
  skip; k3e3 24 /2, k3e1, skip, skip; k5e6 32 /2, k3e3, k5e1, k3e3; k5e6 64 /2, k5e3, k5e1,
  k5e6; k3e6 112, k5e1, k5e3, k3e1; k5e6 184 /2, k5e6, k5e3, k5e6; k5e6 352; conv 1x1 1504.
  ReLU. Its three 2-group 1x1 projections (``_g2``) are dense here (the builder has no grouped
  1x1 conv): +1.7M MACs at 14x14, outside any patch stage.
- MbV2-RD (Lin et al., "MCUNetV2", NeurIPS 2021, Fig. 4 / Table 1): MobileNetV2-1.0 with the
  patch stage's receptive field redistributed: conv 3x3, the first MB1 block without its 3x3
  depthwise conv, then MB6 3x3 /2 24 and MB6 3x3 /2 32; MobileNetV2's second 24-channel block
  moved to the per-layer stage (after the first 32-channel block, as a 32-channel block).
"""

from __future__ import annotations

from tinypatch.frontends.spec import BlockSpec, NetSpec

# (expand, kernel, stride, out channels, SE) per block; None: skip (identity) block
_MNASNET_A1 = ([(1, 3, 1, 16, False)] + [(6, 3, 2 if i == 0 else 1, 24, False) for i in range(2)]
               + [(3, 5, 2 if i == 0 else 1, 40, True) for i in range(3)]
               + [(6, 3, 2 if i == 0 else 1, 80, False) for i in range(4)]
               + [(6, 3, 1, 112, True) for _ in range(2)]
               + [(6, 5, 2 if i == 0 else 1, 160, True) for i in range(3)] + [(6, 3, 1, 320, False)])
_FBNET_A = [None, (3, 3, 2, 24, False), (1, 3, 1, 24, False), None, None,
            (6, 5, 2, 32, False), (3, 3, 1, 32, False), (1, 5, 1, 32, False), (3, 3, 1, 32, False),
            (6, 5, 2, 64, False), (3, 5, 1, 64, False), (1, 5, 1, 64, False), (6, 5, 1, 64, False),
            (6, 3, 1, 112, False), (1, 5, 1, 112, False), (3, 5, 1, 112, False), (1, 3, 1, 112, False),
            (6, 5, 2, 184, False), (6, 5, 1, 184, False), (3, 5, 1, 184, False), (6, 5, 1, 184, False),
            (6, 5, 1, 352, False)]


def _blocks(stem: int, rows: list, act: str) -> tuple[BlockSpec | None, ...]:
    cin, out = stem, []
    for r in rows:
        if r is None:
            out.append(None)
            continue
        e, k, s, c, se = r
        out.append(BlockSpec(c, k, s, e, shortcut=s == 1 and cin == c, act=act, use_se=se))
        cin = c
    return tuple(out)


def mnasnet_a1(resolution: int = 224) -> NetSpec:
    return NetSpec("mnasnet-a1", resolution, 32, _blocks(32, _MNASNET_A1, "RELU"), 1280, act="RELU",
                   source="MnasNet (CVPR 2019) Fig. 7(a)")


def fbnet_a(resolution: int = 224) -> NetSpec:
    return NetSpec("fbnet-a", resolution, 16, _blocks(16, _FBNET_A, "RELU"), 1504, act="RELU",
                   source="FBNet (CVPR 2019) Fig. 4, mobile-vision fbnet_a")


def mbv2_rd(mbv2: NetSpec) -> NetSpec:
    """MCUNetV2's MbV2-RD from the MobileNetV2-1.0 spec ``mbv2`` (torchvision layout)."""
    b = list(mbv2.blocks)
    first, second24, first32 = b[0], b[2], b[3]
    assert first is not None and second24 is not None and first32 is not None
    moved = BlockSpec(first32.out_channels, second24.kernel, 1, second24.expand_ratio, shortcut=True)
    blocks = (BlockSpec(first.out_channels, first.kernel, 1, 1, False, depthwise=False), b[1], first32, moved,
              *b[4:])
    return NetSpec("mbv2-rd", mbv2.resolution, mbv2.stem_channels, blocks, mbv2.feature_mix,
                   source="MCUNetV2 (NeurIPS 2021) Fig. 4, Table 1")
