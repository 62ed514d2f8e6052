"""The Hugging Face Hub: reference parsing (:mod:`.refs`, network-free), HTTP plumbing (:mod:`.http`),
dataset cards (:mod:`.card`) and transfers (:mod:`.transfer`: push, pull, download, remote headers)."""
