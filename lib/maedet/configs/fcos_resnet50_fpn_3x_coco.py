# FCOS with the ResNet-50 reference backbone, trained from scratch with the paper's 3x schedule on COCO.
# ResNet-50 is built by the same MAEDetBackbone code as the searched backbones (same init, same norm), so
# the comparison with fcos_maedet-m_fpn_3x_coco.py differs only in the structure: this config inherits
# that one and changes the structure and the FPN's input channels.
#   PYTHONPATH=lib python .venv/lib/python3.11/site-packages/mmdet/.mim/tools/train.py \
#       lib/maedet/configs/fcos_resnet50_fpn_3x_coco.py          (or tools/dist_train.sh ... 8)
_base_ = './fcos_maedet-m_fpn_3x_coco.py'

model = dict(
    backbone=dict(structure='resnet50'),
    # maedet.mmdet_backbone.neck_in_channels('resnet50', (2, 3, 4))
    neck=dict(in_channels=[512, 1024, 2048]))
