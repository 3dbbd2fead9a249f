"""COCO class names as Rekognition names them, with the parents and category Rekognition reports."""

from __future__ import annotations

# Rekognition's own names where they differ from a title-cased COCO name.
REKOGNITION_NAMES: dict[str, str] = {
    "tv": "TV", "cell phone": "Mobile Phone", "remote": "Remote Control", "sports ball": "Ball",
    "tennis racket": "Racket", "skis": "Skiing", "hair drier": "Blow Dryer", "dining table": "Dining Table",
    "potted plant": "Potted Plant", "couch": "Couch", "motorcycle": "Motorcycle", "airplane": "Airplane",
}

VEHICLES = {"Bicycle", "Car", "Motorcycle", "Airplane", "Bus", "Train", "Truck", "Boat"}
ANIMALS = {"Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra", "Giraffe"}
PETS = {"Cat", "Dog"}


def rekognition_name(coco_name: str) -> str:
    return REKOGNITION_NAMES.get(coco_name, coco_name.title())


def parents_of(name: str) -> list[dict[str, str]]:
    if name in VEHICLES:
        return [{"Name": "Vehicle"}, {"Name": "Transportation"}]
    if name in ANIMALS:
        return [{"Name": "Animal"}, {"Name": "Mammal" if name != "Bird" else "Bird"}] + ([{"Name": "Pet"}] if name in PETS else [])
    return []


def categories_of(name: str) -> list[dict[str, str]]:
    if name == "Person":
        return [{"Name": "Person Description"}]
    if name in VEHICLES:
        return [{"Name": "Vehicles and Automotive"}]
    if name in ANIMALS:
        return [{"Name": "Animals and Pets"}]
    return [{"Name": "Everyday Objects"}]
