# YOLOF (single-level C5 + dilated encoder) with the MAE-DET-M backbone, from scratch with the paper's
# protocol (Appendix A: SGD lr 0.02, momentum 0.9, weight decay 1e-4, batch 16, multi-scale training
# [0.8, 1.0], SyncBN) and the 3x schedule (36 epochs, decays at 28 and 33).
# The paper's Table 4 trains YOLOF for 12 epochs from an ImageNet-pretrained backbone instead: set
# max_epochs = 12, milestones [8, 11] and the backbone's
# init_cfg=dict(type='Pretrained', checkpoint='<classification checkpoint of the same structure>').
_base_ = 'mmdet::yolof/yolof_r50-c5_8xb8-1x_coco.py'

custom_imports = dict(imports=['maedet.mmdet_backbone'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='MAEDetBackbone',
        structure='maedet-m',
        out_indices=(4, ),           # C5 only
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=None),
    neck=dict(in_channels=2048))     # neck_in_channels('maedet-m', (4,))[0]

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(1333, 800), ratio_range=(0.8, 1.0), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomShift', prob=0.5, max_shift_px=32),
    dict(type='PackDetInputs')
]
# batch 16 (8 GPUs x 2) at lr 0.02 as in the paper, instead of YOLOF's own 64 at lr 0.12
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.00066667, by_epoch=False, begin=0, end=1500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[28, 33], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
