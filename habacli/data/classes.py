"""Class-name tables too long to inline in :mod:`habacli.data.spec`."""

from __future__ import annotations

# CIFAR-100 fine labels in label order (alphabetical, as in the dataset's meta file).
CIFAR100: tuple[str, ...] = tuple(
    """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split()
)

# ImageNet subsets of MTT/HaBa, in MTT's class order (label = position in the index list).
# Index order equals sorted WordNet-id order in ImageNet-1k, which is how the folders are named.
#: Fashion-MNIST's classes, index = label (Xiao et al. 2017).
FASHION_MNIST_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

IMAGENETTE_WNIDS: tuple[str, ...] = (
    "n01440764",
    "n02102040",
    "n02979186",
    "n03000684",
    "n03028079",
    "n03394916",
    "n03417042",
    "n03425413",
    "n03445777",
    "n03888257",
)
IMAGENETTE_NAMES: tuple[str, ...] = (
    "tench",
    "English springer",
    "cassette player",
    "chain saw",
    "church",
    "French horn",
    "garbage truck",
    "gas pump",
    "golf ball",
    "parachute",
)
IMAGEWOOF_WNIDS: tuple[str, ...] = (  # indices 193, 182, 258, 162, 155, 167, 159, 273, 207, 229
    "n02096294",
    "n02093754",
    "n02111889",
    "n02088364",
    "n02086240",
    "n02089973",
    "n02087394",
    "n02115641",
    "n02099601",
    "n02105641",
)
IMAGEWOOF_NAMES: tuple[str, ...] = (
    "Australian terrier",
    "Border terrier",
    "Samoyed",
    "beagle",
    "Shih-Tzu",
    "English foxhound",
    "Rhodesian ridgeback",
    "dingo",
    "golden retriever",
    "Old English sheepdog",
)
