"""Vision half of editrisk: image classifiers, concept-rewrite edit tasks, corruptions and
robustness metrics (Brown et al. 2023, "Edit at your own risk"; Santurkar et al. 2021), and the
standard ImageNet VGG/ResNet in torchvision's layout with ImageNet-C-style shift folders."""

from editrisk.vision.arch import VISION_ARCHITECTURES, VisionArch, vision_arch_for
from editrisk.vision.classifiers import Classifier, load_classifier, train_classifier, train_testbed
from editrisk.vision.corruptions import CORRUPTIONS, corrupt, corrupt_suite
from editrisk.vision.data import ImageSet, load_cifar10, load_digits, load_image_folder
from editrisk.vision.shiftfolder import FolderShiftSet, load_shift_folder
from editrisk.vision.tasks import ConceptRewriteTask, digits_rewrite_task, task_from_images
from editrisk.vision.zoo import STANDARD_MODELS, load_standard

__all__ = [
    "CORRUPTIONS",
    "Classifier",
    "ConceptRewriteTask",
    "FolderShiftSet",
    "ImageSet",
    "STANDARD_MODELS",
    "VISION_ARCHITECTURES",
    "VisionArch",
    "corrupt",
    "corrupt_suite",
    "digits_rewrite_task",
    "load_cifar10",
    "load_classifier",
    "load_digits",
    "load_image_folder",
    "load_shift_folder",
    "load_standard",
    "task_from_images",
    "train_testbed",
    "train_classifier",
    "vision_arch_for",
]
