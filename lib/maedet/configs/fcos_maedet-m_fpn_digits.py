# A quick CPU run of fcos_maedet-m_fpn_3x_coco.py on the offline digits dataset (`maedet data` writes it
# to data/digits/): the same detector and protocol at reduced scale -- backbone channels x1/8, FPN/head
# width 32, 192 px images, batch 8, 12 epochs (decays at 9 and 11), BN instead of SyncBN.
# About 20 s per epoch on 2 CPU cores.
#   PYTHONPATH=lib python -c "from mmengine import Config; from mmengine.runner import Runner; \
#       Runner.from_cfg(Config.fromfile('lib/maedet/configs/fcos_maedet-m_fpn_digits.py')).train()"
_base_ = './fcos_maedet-m_fpn_3x_coco.py'

data_root = 'data/digits/'
classes = ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
neck_channels = 32

model = dict(
    backbone=dict(width_multiplier=0.125, norm_cfg=dict(type='BN', requires_grad=True)),
    # neck_in_channels('maedet-m', (2, 3, 4), width_multiplier=0.125)
    neck=dict(in_channels=[64, 208, 256], out_channels=neck_channels),
    bbox_head=dict(num_classes=len(classes), in_channels=neck_channels, feat_channels=neck_channels,
                   norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(192, 192), ratio_range=(0.8, 1.0), keep_ratio=True),
    dict(type='PackDetInputs')       # no flip: digits are not mirror-invariant
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(192, 192), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 metainfo=dict(classes=classes), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))  # batch 8: half the paper's 0.02 at 16
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1), logger=dict(interval=20))
work_dir = 'work_dirs/fcos_maedet-m_fpn_digits'
