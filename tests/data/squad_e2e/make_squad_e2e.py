"""Write the SQuAD v1.1 / v2.0 files of the end-to-end span test from the paragraphs below.

    python tests/data/squad_e2e/make_squad_e2e.py

Nine short encyclopedia-style paragraphs; each question is listed with its gold answers as
they appear in the paragraph (``answer_start`` is found here, at the first occurrence), or
with no answers for an unanswerable SQuAD v2.0 question. squad/ holds the answerable
questions only (v1.1), squad_v2/ every question (v2.0). Splits share paragraphs but never
questions. The tests only read the JSON files this writes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent

# (title, context, {split: [(question, [answers])]}); an empty answer list = unanswerable (v2.0 only).
PARAGRAPHS = [
    (
        "Danube",
        "The Danube is the second-longest river in Europe, after the Volga. It rises in the Black Forest of Germany "
        "at the town of Donaueschingen and flows for about 2,850 kilometres, passing through ten countries before it "
        "empties into the Black Sea through a wide delta in Romania and Ukraine. Four capital cities lie on its banks: "
        "Vienna, Bratislava, Budapest and Belgrade. Since Roman times the river has served as a frontier and a trade "
        "route, and today it is linked to the Rhine by the Main\u2013Danube Canal, completed in 1992.",
        {
            "train": [
                ("Which river in Europe is longer than the Danube?", ["the Volga"]),
                ("In which forest does the Danube rise?", ["the Black Forest"]),
                ("How long is the Danube?", ["about 2,850 kilometres"]),
                ("What canal links the Danube to the Rhine?", ["the Main\u2013Danube Canal"]),
                ("Given that the river flows for a very long way through many different countries of central and "
                 "eastern Europe, into which sea does the Danube finally empty through its wide delta?", ["the Black Sea"]),
                ("How deep is the Danube delta?", []),
            ],
            "dev": [
                ("How many countries does the Danube pass through?", ["ten", "ten countries"]),
                ("Which capital city lies on the Volga?", []),
            ],
            "test": [
                ("When was the Main\u2013Danube Canal completed?", ["1992", "in 1992"]),
                ("How many bridges cross the Danube in Budapest?", []),
            ],
        },
    ),
    (
        "Marie_Curie",
        "Marie Curie was a Polish and naturalised-French physicist and chemist who conducted pioneering research on "
        "radioactivity. Born Maria Sk\u0142odowska in Warsaw in 1867, she moved to Paris in 1891 to study at the "
        "University of Paris. She was the first woman to win a Nobel Prize, the first person to win the prize twice, "
        "and the only person to win it in two scientific fields: physics in 1903 and chemistry in 1911. Together with "
        "her husband Pierre she discovered the elements polonium and radium. She died in 1934 of aplastic anaemia, "
        "probably caused by long exposure to radiation.",
        {
            "train": [
                ("Where was Marie Curie born?", ["Warsaw"]),
                ("When did Curie move to Paris?", ["1891"]),
                ("Which two elements did the Curies discover?", ["polonium and radium"]),
                ("What illness caused Marie Curie's death?", ["aplastic anaemia"]),
                ("When did Pierre Curie win the Nobel Prize in chemistry?", []),
            ],
            "dev": [
                ("In what year did Curie win the Nobel Prize in chemistry?", ["1911", "in 1911"]),
                ("Where did Pierre Curie study?", []),
            ],
            "test": [
                ("What was Marie Curie's name at birth?", ["Maria Sk\u0142odowska"]),
                ("How many children did Marie Curie have?", []),
            ],
        },
    ),
    (
        "Great_Barrier_Reef",
        "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 individual reefs and "
        "900 islands stretching for over 2,300 kilometres. It lies in the Coral Sea, off the coast of Queensland in "
        "north-east Australia, and can be seen from outer space. The reef is built by billions of tiny organisms known "
        "as coral polyps. A large part of it is protected by the Great Barrier Reef Marine Park, and it was selected "
        "as a World Heritage Site in 1981. Rising sea temperatures have caused several mass bleaching events, the most "
        "severe in 2016 and 2017.",
        {
            "train": [
                ("How many individual reefs make up the Great Barrier Reef?", ["over 2,900"]),
                ("In which sea does the Great Barrier Reef lie?", ["the Coral Sea"]),
                ("What organisms build the reef?", ["coral polyps"]),
                ("How many species of fish live on the reef?", []),
            ],
            "dev": [
                ("When did the reef become a World Heritage Site?", ["1981", "in 1981"]),
                ("When was the Great Barrier Reef Marine Park created?", []),
            ],
            "test": [
                ("Off the coast of which Australian state is the reef?", ["Queensland"]),
            ],
        },
    ),
    (
        "Johannes_Gutenberg",
        "Johannes Gutenberg was a German goldsmith and inventor who introduced printing with movable type to Europe "
        "around 1440. His press, adapted from the screw presses used to make wine and olive oil, used metal type cast "
        "in a hand mould and an oil-based ink. The most famous book he printed, the Gutenberg Bible, was finished in "
        "Mainz in about 1455; fewer than fifty copies survive today. Printing spread rapidly: by 1500 presses in more "
        "than two hundred European cities had produced some twenty million volumes.",
        {
            "train": [
                ("What was Gutenberg's trade?", ["goldsmith"]),
                ("Where was the Gutenberg Bible finished?", ["Mainz"]),
                ("What kind of ink did Gutenberg use?", ["an oil-based ink"]),
                ("How many volumes had been printed by 1500?", ["some twenty million"]),
                ("Who paid for the printing of the Gutenberg Bible?", []),
            ],
            "dev": [
                ("Around what year did Gutenberg introduce printing with movable type?", ["around 1440", "1440"]),
                ("How many pages does the Gutenberg Bible have?", []),
            ],
            "test": [
                ("How many copies of the Gutenberg Bible survive?", ["fewer than fifty"]),
                ("When did Gutenberg die?", []),
            ],
        },
    ),
    (
        "Mount_Kilimanjaro",
        "Mount Kilimanjaro is a dormant volcano in Tanzania and, at 5,895 metres above sea level, the highest mountain "
        "in Africa. It has three volcanic cones: Kibo, Mawenzi and Shira. The summit, Uhuru Peak, lies on the crater "
        "rim of Kibo. The first recorded ascent was made in 1889 by the German geologist Hans Meyer and the Austrian "
        "mountaineer Ludwig Purtscheller. The glaciers on the summit have been shrinking quickly, and some scientists "
        "expect the ice cap to vanish within a few decades.",
        {
            "train": [
                ("In which country is Mount Kilimanjaro?", ["Tanzania"]),
                ("How high is Kilimanjaro?", ["5,895 metres"]),
                ("What is the name of the summit of Kilimanjaro?", ["Uhuru Peak"]),
                ("Who climbed Kilimanjaro with Ludwig Purtscheller in 1889?", ["Hans Meyer"]),
                ("When did Kilimanjaro last erupt?", []),
            ],
            "dev": [
                ("Which cone of Kilimanjaro has Uhuru Peak on its rim?", ["Kibo"]),
            ],
            "test": [
                ("When was the first recorded ascent of Kilimanjaro?", ["1889", "in 1889"]),
                ("How many people climb Kilimanjaro each year?", []),
            ],
        },
    ),
    (
        "Hubble_Space_Telescope",
        "The Hubble Space Telescope was launched into low Earth orbit by the Space Shuttle Discovery in April 1990 and "
        "remains in operation. Its main mirror, 2.4 metres across, was found to be flawed soon after launch, and the "
        "images it sent back were blurred. A servicing mission in 1993 installed corrective optics, and four later "
        "missions replaced gyroscopes, cameras and batteries. Hubble has observed distant galaxies, helped to measure "
        "the expansion rate of the universe, and is named after the astronomer Edwin Hubble.",
        {
            "train": [
                ("Which space shuttle launched the Hubble telescope?", ["the Space Shuttle Discovery"]),
                ("How wide is Hubble's main mirror?", ["2.4 metres"]),
                ("When were corrective optics installed on Hubble?", ["1993"]),
                ("How much did the Hubble Space Telescope cost?", []),
            ],
            "dev": [
                ("Who is the Hubble Space Telescope named after?", ["the astronomer Edwin Hubble", "Edwin Hubble"]),
                ("Considering all of the servicing work that astronauts carried out on the telescope over the years "
                 "after its launch, what did the four later missions replace besides cameras and batteries?",
                 ["gyroscopes"]),
                ("When will Hubble stop operating?", []),
            ],
            "test": [
                ("In what month and year was Hubble launched?", ["April 1990"]),
            ],
        },
    ),
    (
        "Honey_bee",
        "A honey bee colony usually has a single queen, a few hundred male drones and tens of thousands of female "
        "worker bees. Workers gather nectar and pollen, build the wax comb and care for the young; a worker lives for "
        "about six weeks in summer. The queen can lay up to 2,000 eggs a day. Foragers tell their nestmates where to "
        "find food with the waggle dance, whose angle gives the direction of the flowers relative to the sun and whose "
        "length gives their distance. The dance was decoded by the Austrian scientist Karl von Frisch, who shared the "
        "Nobel Prize in 1973.",
        {
            "train": [
                ("How many queens does a honey bee colony usually have?", ["a single queen"]),
                ("How long does a worker bee live in summer?", ["about six weeks"]),
                ("What do foragers use to tell nestmates where food is?", ["the waggle dance"]),
                ("Who decoded the waggle dance?", ["Karl von Frisch"]),
                ("How long does a queen bee live?", []),
            ],
            "dev": [
                ("How many eggs can the queen lay a day?", ["up to 2,000", "2,000"]),
                ("How far can a forager fly?", []),
            ],
            "test": [
                ("When did Karl von Frisch share the Nobel Prize?", ["1973", "in 1973"]),
                ("What do drones eat?", []),
            ],
        },
    ),
    (
        "Trans-Siberian_Railway",
        "The Trans-Siberian Railway is a network of railways connecting Moscow with the Russian Far East. Its main "
        "route, from Moscow to Vladivostok, is 9,289 kilometres long and crosses eight time zones, which makes it the "
        "longest railway line in the world. Construction began in 1891 under Tsar Alexander III and the line through "
        "Russian territory was completed in 1916. A journey along the whole route takes about seven days without "
        "stops. Branches lead to Mongolia, China and North Korea.",
        {
            "train": [
                ("Which city is at the eastern end of the Trans-Siberian main route?", ["Vladivostok"]),
                ("How many time zones does the main route cross?", ["eight"]),
                ("Under which tsar did construction begin?", ["Tsar Alexander III"]),
                ("How many passengers travel on the Trans-Siberian Railway each year?", []),
            ],
            "dev": [
                ("How long is the main route of the Trans-Siberian Railway?", ["9,289 kilometres"]),
            ],
            "test": [
                ("How long does the whole journey take without stops?", ["about seven days", "seven days"]),
                ("Who designed the station in Vladivostok?", []),
            ],
        },
    ),
    (
        "Photosynthesis",
        "Photosynthesis is the process by which green plants, algae and some bacteria turn light energy into chemical "
        "energy. In plants it takes place mainly in the leaves, inside organelles called chloroplasts, which contain "
        "the green pigment chlorophyll. Using the energy of sunlight, the plant combines carbon dioxide from the air "
        "with water taken up by its roots to make glucose, and releases oxygen as a by-product. Almost all the oxygen "
        "in the Earth's atmosphere has been produced this way.",
        {
            "train": [
                ("In which organelles does photosynthesis take place?", ["chloroplasts"]),
                ("What green pigment do chloroplasts contain?", ["chlorophyll"]),
                ("What gas is released as a by-product of photosynthesis?", ["oxygen"]),
            ],
            "dev": [
                ("What sugar does photosynthesis produce?", ["glucose"]),
                ("What pigment makes autumn leaves red?", []),
            ],
            "test": [
                ("Where does a plant get the water it needs for photosynthesis?", ["its roots", "taken up by its roots"]),
            ],
        },
    ),
]


def question_id(title: str, question: str) -> str:
    """A stable 24-hex-digit id, as SQuAD's look."""
    return hashlib.md5(f"{title}|{question}".encode()).hexdigest()[:24]


def squad_file(split: str, version_2: bool) -> dict:
    """One split in the SQuAD layout: v1.1 keeps the answerable questions only."""
    articles = []
    for title, context, questions in PARAGRAPHS:
        qas = []
        for question, answers in questions.get(split, []):
            if not answers and not version_2:
                continue
            for text in answers:
                if text not in context:
                    raise ValueError(f"{title}: answer {text!r} is not in the paragraph")
            qa = {
                "id": question_id(title, question),
                "question": question,
                "answers": [{"text": text, "answer_start": context.index(text)} for text in answers],
            }
            if version_2:
                qa["is_impossible"] = not answers
            qas.append(qa)
        if qas:
            articles.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "v2.0" if version_2 else "1.1", "data": articles}


def main() -> None:
    """Write squad/{train,dev,test}.json and squad_v2/{train,dev,test}.json."""
    for folder, version_2 in (("squad", False), ("squad_v2", True)):
        (OUT / folder).mkdir(exist_ok=True)
        for split in ("train", "dev", "test"):
            text = json.dumps(squad_file(split, version_2), indent=1, ensure_ascii=False)
            (OUT / folder / f"{split}.json").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
