# RetinaNet with the MAE-DET-M backbone, from scratch, the paper's 3x schedule on COCO (Appendix A: SGD
# lr 0.02, momentum 0.9, weight decay 1e-4, batch 16, 36 epochs decaying at 28 and 33, multi-scale
# training [0.8, 1.0] of 1333x800, SyncBN, FPN/head width 256). Everything else: mmdet's bundled config.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['maedet.mmdet_backbone'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='MAEDetBackbone',
        structure='maedet-m',        # zoo name or structure JSON (e.g. a search's best.json)
        out_indices=(2, 3, 4),       # C3-C5
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=None),
    # maedet.mmdet_backbone.neck_in_channels('maedet-m', (2, 3, 4)); P6 from C5 ('on_input') as bundled
    neck=dict(in_channels=[512, 1632, 2048], start_level=0))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(1333, 800), ratio_range=(0.8, 1.0), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[28, 33], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
                     clip_grad=dict(max_norm=35, norm_type=2))  # scratch training stability
auto_scale_lr = dict(enable=False, base_batch_size=16)
