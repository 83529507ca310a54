"""unlearnkit: machine unlearning for image classifiers, and the evidence that the data is gone.

The public API follows the flow dataset -> request -> model -> method -> metrics::

    import unlearnkit as uk
    data = uk.load_dataset("digits")
    request = uk.make_request(data, "class:3")
    unlearned, record = uk.unlearn(model, request, "ft")

Own arrays work too: ``uk.Dataset("mine", uk.ImageData(images, labels, class_names), ...)``.
"""

from unlearnkit.checkpoint import load_model, load_state, save_checkpoint
from unlearnkit.data import Dataset, ImageData, load_dataset
from unlearnkit.methods import unlearn
from unlearnkit.metrics import evaluate, gap_to_oracle
from unlearnkit.models import as_classifier, build_model
from unlearnkit.tasks import class_request, index_request, make_request, place, random_request
from unlearnkit.train import TrainRecipe, default_recipe, train

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "ImageData",
    "TrainRecipe",
    "as_classifier",
    "build_model",
    "class_request",
    "default_recipe",
    "evaluate",
    "gap_to_oracle",
    "index_request",
    "load_dataset",
    "load_model",
    "load_state",
    "make_request",
    "place",
    "random_request",
    "save_checkpoint",
    "train",
    "unlearn",
]
