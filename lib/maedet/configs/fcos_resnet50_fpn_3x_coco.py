# FCOS with the ResNet-50 reference backbone, trained from scratch with the paper's 3x schedule on COCO.
# ResNet-50 is built by the same MAEDetBackbone code as the searched backbones (same init, same norm), so
# the comparison with fcos_maedet-m_fpn_3x_coco.py differs only in the structure
# (Appendix A: SGD lr 0.02, momentum 0.9, weight decay 1e-4, batch 16 = 8 GPUs x 2, 36 epochs with x0.1
# decays at 28 and 33, multi-scale training [0.8, 1.0] of 1333x800, SyncBN, FPN/head width 256).
#
# Everything not set here is mmdet's bundled FCOS config. Run with mmdet's own tooling, e.g.
#   PYTHONPATH=lib python .venv/lib/python3.11/site-packages/mmdet/.mim/tools/train.py \
#       lib/maedet/configs/fcos_resnet50_fpn_3x_coco.py          (or tools/dist_train.sh ... 8)
# or from Python: mmengine.runner.Runner.from_cfg(mmengine.Config.fromfile(<this file>)).train()
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

# makes `type='MAEDetBackbone'` known to mmdet's registry (maedet must be importable: PYTHONPATH=lib)
custom_imports = dict(imports=['maedet.mmdet_backbone'], allow_failed_imports=False)

model = dict(
    # from scratch: torchvision-style RGB normalisation instead of the caffe-pretrained one
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='MAEDetBackbone',
        structure='resnet50',        # zoo name, or the path of a structure JSON (a search's best.json)
        out_indices=(2, 3, 4),       # C3, C4, C5 (0 = C1 at stride 2 ... 4 = C5 at stride 32)
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=None),              # from scratch; dict(type='Pretrained', checkpoint=...) to initialise
    # in_channels = maedet.mmdet_backbone.neck_in_channels('resnet50', (2, 3, 4)); the bundled config feeds
    # C2-C5 with start_level=1, we feed C3-C5 with start_level=0: the same FPN (P3-P5 + P6, P7)
    neck=dict(in_channels=[512, 1024, 2048], start_level=0))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(1333, 800), ratio_range=(0.8, 1.0), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

# 3x schedule
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[28, 33], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
