"""The paper's published numbers, printed beside ours in every report (never used as results).

Source: MAE-DET, ICML 2022 (../shared/seeds/004_76caf48c8e19ce23.txt; tables cross-checked against the
second extraction 001_... and the slides 003_...). FLOPs are MACs; detection FLOPs at 1280x800.
"""
from __future__ import annotations

# Backbones: FLOPs (MACs) at 1280x800 (Table 1) and 224x224 (Table 4), params, layers (Appendix H).
BACKBONES: dict[str, dict] = {
    "maedet-s": {"macs_1280x800": 48.7e9, "params": 21.2e6, "layers": 79, "table": "Table 13"},
    "maedet-m": {"macs_1280x800": 89.9e9, "params": 25.8e6, "macs_224": 4.4e9, "layers": 91, "table": "Table 12"},
    "maedet-l": {"macs_1280x800": 152.9e9, "params": 43.9e6, "layers": 109, "table": "Table 14"},
    "resnet50": {"macs_1280x800": 83.6e9, "params": 23.5e6, "macs_224": 4.1e9},
    "resnet101": {"macs_1280x800": 159.5e9, "params": 42.4e6},
    "table4-single-coarse": {"macs_224": 4.4e9, "params": 60.1e6, "layers": 91, "table": "Table 10"},
    "table4-multi-coarse": {"macs_224": 4.3e9, "params": 29.4e6, "layers": 91, "table": "Table 11"},
    "init": {"table": "Table 15"},
}

# Table 1: COCO val2017 AP of each backbone under three heads (trained from scratch, 6x), FPS on V100.
TABLE1 = [
    # backbone, head, AP, AP_S, AP_M, AP_L, FPS
    ("resnet50", "retinanet", 40.2, 24.3, 43.3, 52.2, 23.2),
    ("resnet50", "fcos", 42.7, 28.8, 46.2, 53.8, 27.6),
    ("resnet50", "gfl", 44.7, 29.1, 48.1, 56.6, 24.2),
    ("resnet101", "retinanet", 42.1, 25.8, 45.7, 54.1, 18.7),
    ("resnet101", "fcos", 44.4, 28.3, 47.9, 56.9, 21.6),
    ("resnet101", "gfl", 46.3, 29.9, 50.1, 58.7, 19.4),
    ("maedet-s", "retinanet", 40.0, 23.9, 43.3, 52.7, 35.5),
    ("maedet-s", "fcos", 42.5, 26.8, 46.0, 54.6, 43.0),
    ("maedet-s", "gfl", 44.7, 27.6, 48.4, 58.2, 37.2),
    ("maedet-m", "retinanet", 42.0, 26.7, 45.2, 55.1, 21.5),
    ("maedet-m", "fcos", 44.5, 28.6, 48.1, 56.1, 24.2),
    ("maedet-m", "gfl", 46.8, 29.9, 50.4, 60.0, 22.2),
    ("maedet-l", "retinanet", 43.0, 27.3, 46.5, 56.0, 17.6),
    ("maedet-l", "fcos", 45.9, 30.2, 49.4, 58.4, 19.2),
    ("maedet-l", "gfl", 47.6, 30.2, 51.8, 60.8, 18.1),
]

# Table 4: search strategies. FLOPs at 224 and params; ImageNet top-1; COCO AP with YOLOF and FCOS.
TABLE4 = [
    # row, structure, flops, params, top1, yolof (AP, S, M, L), fcos (AP, S, M, L)
    ("ResNet-50", "resnet50", 4.1e9, 23.5e6, 78.0, (37.8, 19.1, 42.1, 53.3), (38.0, 23.2, 40.8, 47.6)),
    ("Zen-Score, coarse", None, 4.4e9, 67.9e6, 78.9, (38.9, 19.0, 43.2, 56.0), (38.1, 23.2, 40.5, 48.1)),
    ("Single-scale, coarse", "table4-single-coarse", 4.4e9, 60.1e6, 78.7, (39.8, 19.9, 44.4, 56.5),
     (38.8, 23.1, 41.4, 50.1)),
    ("Multi-scale, coarse", "table4-multi-coarse", 4.3e9, 29.4e6, 78.9, (40.1, 21.1, 44.5, 55.9),
     (39.4, 23.7, 42.3, 50.0)),
    ("Multi-scale, coarse-to-fine", "maedet-m", 4.4e9, 25.8e6, 79.1, (40.3, 20.8, 44.7, 56.4),
     (40.0, 24.5, 42.6, 50.6)),
]

# Table 7: training from scratch (73 epochs) vs ImageNet-pretrained init (24 epochs).
TABLE7 = [
    # backbone, head, strategy, epochs, AP, AP_S, AP_M, AP_L
    ("resnet50", "gfl", "scratch", 73, 44.7, 29.1, 48.1, 56.6),
    ("resnet50", "gfl", "pretrain", 24, 44.0, 27.1, 47.8, 56.1),
    ("maedet-m", "retinanet", "scratch", 73, 42.0, 26.7, 45.2, 55.1),
    ("maedet-m", "retinanet", "pretrain", 24, 42.3, 25.3, 46.5, 56.0),
    ("maedet-m", "fcos", "scratch", 73, 44.5, 28.6, 48.1, 56.1),
    ("maedet-m", "fcos", "pretrain", 24, 44.5, 28.8, 48.5, 56.9),
    ("maedet-m", "gfl", "scratch", 73, 46.8, 29.9, 50.4, 60.0),
    ("maedet-m", "gfl", "pretrain", 24, 46.0, 29.0, 50.0, 59.9),
]

# Table 8: alpha_3:alpha_4:alpha_5 of the searches (FCOS, 3x). FLOPs at 1280x800, params, AP ...
TABLE8 = [
    # ratio, flops, params, AP, AP50, AP75, AP_S, AP_M, AP_L
    ("ResNet-50", 83.6e9, 23.5e6, 38.0, 55.2, 41.0, 23.2, 40.8, 47.6),
    ("1:1:1", 84.4e9, 11.5e6, 37.4, 54.6, 40.0, 23.6, 39.8, 46.6),
    ("1:1:2", 84.8e9, 13.4e6, 37.8, 54.9, 40.5, 23.2, 40.0, 47.8),
    ("1:1:4", 85.9e9, 17.2e6, 38.6, 56.0, 41.4, 23.4, 41.3, 48.6),
    ("1:1:6", 88.7e9, 29.4e6, 39.4, 57.3, 42.1, 23.7, 42.3, 50.0),
    ("1:1:8", 89.9e9, 31.7e6, 39.4, 57.2, 42.0, 23.7, 42.5, 49.5),
    ("1:4:1", 86.3e9, 10.9e6, 35.7, 52.6, 38.3, 22.2, 38.1, 44.9),
    ("4:1:1", 86.1e9, 11.1e6, 33.9, 50.2, 36.7, 20.4, 36.1, 43.4),
]

# Table 9: zero-shot proxies, same space/budget (91G)/strategy, FCOS 3x from scratch.
TABLE9 = [
    # proxy, flops, params, AP, AP_S, AP_M, AP_L
    ("ResNet-50", 84e9, 23.5e6, 38.0, 23.2, 40.8, 47.6),
    ("SynFlow", 90e9, 67.4e6, 35.6, 21.8, 38.1, 44.8),
    ("NASWOT", 88e9, 28.1e6, 36.7, 23.1, 38.8, 45.9),
    ("Zen-NAS", 91e9, 67.9e6, 38.1, 23.2, 40.5, 48.1),
    ("MAE-DET", 89e9, 25.8e6, 39.4, 23.7, 42.3, 50.0),
]

# Table 5, upper half: FCOS transfer with ImageNet-pretrained backbones (dataset, backbone, detector FLOPs, AP;
# VOC: 12 epochs at 1000x600, VOC's AP at IoU 0.5; Cityscapes: 64 epochs at 2048x1024, COCO-style AP)
TABLE5_TRANSFER = [
    ("VOC", "resnet50", 120e9, 76.8),
    ("VOC", "maedet-m", 123e9, 80.9),
    ("Cityscapes", "resnet50", 411e9, 37.0),
    ("Cityscapes", "maedet-m", 426e9, 38.1),
]

# Table 5 (lower half): Mask R-CNN on COCO, 6x from scratch.
TABLE5_MASK = [
    # backbone, flops (full detector), AP, AP_mask
    ("resnet50", 375e9, 43.2, 39.2),
    ("maedet-m", 379e9, 44.5, 40.3),
]
TABLE5_SCNET = [
    # backbone, flops (full detector), AP, AP_mask (SCNet, COCO, 6x from scratch, 1333x800)
    ("resnet50", 671e9, 46.3, 41.6),
    ("maedet-m", 675e9, 47.1, 42.3),
]

# Table 6 (Appendix B): SSDLite on COCO, from scratch, 600 epochs at 320x320; backbone FLOPs and params at 320,
# AP, AP_S, AP_M, AP_L and FPS on a Pixel 2 (CPU, FP32, batch 1, full model).
TABLE6 = [
    # name, zoo/search name, flops, params, AP, AP_S, AP_M, AP_L, FPS
    ("MobileNetV2-0.5", "mobilenetv2-0.5", 217e6, 0.7e6, 14.7, 0.8, 11.0, 31.2, 13.5),
    ("MobileNetV2-1.0", "mobilenetv2-1.0", 651e6, 2.2e6, 21.1, 1.7, 20.5, 39.9, 6.6),
    ("MAE-DET-MB-S", "maedet-mb-s", 201e6, 0.6e6, 15.9, 0.8, 12.2, 31.8, 13.8),
    ("MAE-DET-MB-M", "maedet-mb-m", 645e6, 2.0e6, 22.2, 2.1, 21.5, 42.3, 6.3),
    ("MAE-DET-MB-M-SE", "maedet-mb-m-se", 647e6, 2.3e6, 22.6, 2.3, 22.0, 42.5, 5.6),
]

# Table 2: search cost (GPU days) of detection NAS methods.
SEARCH_COST_GPU_DAYS = {"DetNAS": 68, "SP-NAS": 26, "MAE-DET": 0.6}

# Search settings of Section 5.1 / Appendix A.
SEARCH = {"population": 256, "iterations": 96000, "resolution": 384, "flops_224": 4.4e9, "layers": 91,
          "alpha": (0, 0, 1, 1, 6)}


# Table 3: GFL (v2 in the paper), 6x from scratch on COCO, full-detector FLOPs at 1333x800 and params
# (name, our backbone, search part, FLOPs, params, AP, AP_S, AP_M, AP_L, FPS on V100)
TABLE3 = [
    ("DetNAS-3.8G", "detnas-3.8g", "backbone", 205e9, 35.5e6, 46.4, 29.3, 50.0, 59.0, 17.6),
    ("SpineNet-96", "spinenet-96", "backbone+FPN", 216e9, 41.3e6, 46.6, 29.8, 50.2, 58.9, 19.9),
    ("MAE-DET-M", "maedet-m", "backbone", 215e9, 34.9e6, 46.8, 29.9, 50.4, 60.0, 22.2),
]
