"""Image transforms in model space: DSA augmentation (:mod:`.augment`) and ZCA whitening (:mod:`.zca`)."""
