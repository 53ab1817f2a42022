"""The CrossNER entity types, written for people and the LLM: a definition, one edge case and one non-entity each.

Paraphrased from the CrossNER annotation guidelines (Liu et al., "CrossNER: Evaluating Cross-Domain Named Entity
Recognition", AAAI 2021, appendix) and checked against the annotated training sentences. ``make_guides.py`` adds
five examples per type from each domain's *training* split and writes ``annotation_guide/guides/crossner_*.yaml``.
"""

from __future__ import annotations

# (definition, (edge case, decision), (non-entity, reason)) per type, per domain
Spec = tuple[str, tuple[str, str], tuple[str, str]]

_PERSON: Spec = (
    "The name of a person who is not characterised in the text by the domain's own person type (researcher, "
    "scientist or politician): writers, artists, business people, fictional characters.",
    (
        "A person known for the domain's work, e.g. a computer scientist or a statesman.",
        "Use the domain's person type (researcher, scientist, politician), not person.",
    ),
    ("he", "Pronouns and role nouns are never labelled."),
)
_COUNTRY: Spec = (
    "The name of a sovereign country or state, historical ones included (the United States, France, the Soviet "
    "Union), also when it is used as a modifier.",
    ("A nationality adjective such as 'French' or 'American'.", "Label it misc, not country."),
    ("the nation", "A common noun, not a name."),
)
_LOCATION: Spec = (
    "The name of a place that is not a country: cities, regions, states and provinces, continents, rivers, "
    "mountains, named buildings and facilities.",
    ("A country name.", "Label countries as country; location is for every other place."),
    ("downtown", "A common noun, not a name."),
)
_ORGANISATION: Spec = (
    "The name of an organised group that no more specific type covers: companies, agencies, institutes, "
    "laboratories, government bodies, committees, foundations, newspapers.",
    (
        "An organisation named after a place, e.g. 'Bank of England'.",
        "Label the whole name as organisation, not the place inside it.",
    ),
    ("the company", "A generic reference without a name."),
)
_MISC: Spec = (
    "A proper name of the domain that fits no other type: nationalities and other demonyms, languages, named "
    "works (books, films, songs), laws, prizes not covered by another type, named ideas and movements.",
    ("A name that one of the specific types covers.", "Use that type; misc is only for names left over."),
    ("the book", "A common noun, not a name."),
)

AI: dict[str, Spec] = {
    "researcher": (
        "The name of a person known for research in artificial intelligence, computer science or a related "
        "science: scientists, professors, inventors of methods.",
        (
            "A researcher's name inside a method's name, e.g. 'Markov' in 'Markov chain'.",
            "Label the whole method name as algorithm; do not label the person inside it.",
        ),
        ("the authors", "A common noun phrase, not a name."),
    ),
    "person": _PERSON,
    "university": (
        "The name of a university, college or other institution of higher education.",
        (
            "A laboratory or institute inside a university, e.g. 'MIT Media Lab'.",
            "Label the whole name as organisation; a bare university name is university.",
        ),
        ("the university", "A common noun, not a name."),
    ),
    "organisation": _ORGANISATION,
    "conference": (
        "The name of a conference, workshop, symposium or journal of the field, or of the society that runs it "
        "(AAAI, NeurIPS, ACL, IEEE), including its abbreviation.",
        ("A society that only runs conferences, e.g. 'ELRA' organising LREC.", "Label it conference."),
        ("the workshop", "A common noun, not a name."),
    ),
    "country": _COUNTRY,
    "location": _LOCATION,
    "field": (
        "A research field or sub-field: machine learning, computer vision, natural language processing, "
        "robotics, statistics, linguistics.",
        ("A field name used as a modifier, e.g. 'machine learning methods'.", "Label 'machine learning' as field."),
        ("research", "Too generic: label only a named discipline."),
    ),
    "task": (
        "A problem or task that methods are applied to: speech recognition, machine translation, image "
        "classification, object detection, question answering.",
        (
            "A task that is also a field, e.g. 'speech recognition'.",
            "Label it task when it names the problem solved, field when it names the research area.",
        ),
        ("the problem", "A common noun, not a named task."),
    ),
    "algorithm": (
        "The name of an algorithm, model, architecture or method: support vector machine, backpropagation, "
        "hidden Markov model, convolutional neural network, k-means.",
        ("A plural or a trailing 's' split off, e.g. 'autoencoder s'.", "Label the name without the split-off 's'."),
        ("the method", "A common noun, not a named method."),
    ),
    "metrics": (
        "The name of an evaluation measure or loss: accuracy, precision, recall, F1 score, mean squared error, "
        "BLEU, word error rate.",
        ("A metric named after a person, e.g. 'Matthews correlation coefficient'.", "Label the whole name as metrics."),
        ("performance", "Too generic: label only a named measure."),
    ),
    "product": (
        "The name of a product, software, system, library, robot or device: Siri, TensorFlow, Watson, ASIMO, "
        "MATLAB toolboxes.",
        ("A programming language, e.g. 'Python'.", "Label it programlang, not product."),
        ("the software", "A common noun, not a name."),
    ),
    "programlang": (
        "The name of a programming language: Python, Java, C++, Lisp, Prolog, R, MATLAB as a language.",
        ("A library written in a language, e.g. 'NumPy'.", "Label the library as product."),
        ("code", "A common noun, not a language name."),
    ),
    "misc": _MISC,
}

POLITICS: dict[str, Spec] = {
    "politician": (
        "The name of a person known as a politician: heads of state and government, ministers, members of "
        "parliament, candidates, party leaders, activists in politics.",
        (
            "A politician's name inside a party or an event name, e.g. 'Thatcherism'.",
            "Label the larger name by its own type; do not label the person inside it.",
        ),
        ("the president", "A role noun, not a name."),
    ),
    "person": _PERSON,
    "politicalparty": (
        "The name of a political party or a party group: the Labour Party, the Democratic Party, the "
        "Conservatives, Sinn Féin, including its abbreviation.",
        ("A party name used as a modifier, e.g. 'Labour MPs'.", "Label 'Labour' as politicalparty."),
        ("the opposition", "A generic reference, not a party name."),
    ),
    "organisation": _ORGANISATION,
    "election": (
        "The name of an election or referendum, usually with its year or place: the 2010 general election, the "
        "1992 United States presidential election, the Brexit referendum.",
        ("A year and a place inside an election name.", "Label the whole name as election; not the place inside it."),
        ("the vote", "A common noun, not a named election."),
    ),
    "event": (
        "The name of an event other than an election: wars, revolutions, protests, summits, crises, treaties "
        "signed at a named event.",
        ("An election or referendum.", "Label it election, not event."),
        ("the war", "A common noun, not a named event."),
    ),
    "country": _COUNTRY,
    "location": _LOCATION,
    "misc": _MISC,
}

SCIENCE: dict[str, Spec] = {
    "scientist": (
        "The name of a person known for work in science: physicists, chemists, biologists, astronomers, "
        "mathematicians, inventors.",
        (
            "A scientist's name inside a theory or award, e.g. 'Nobel Prize' or 'Newton's laws'.",
            "Label the whole name by its own type (award, theory); not the person inside it.",
        ),
        ("the researchers", "A common noun phrase, not a name."),
    ),
    "person": _PERSON,
    "university": AI["university"],
    "organisation": _ORGANISATION,
    "country": _COUNTRY,
    "location": _LOCATION,
    "discipline": (
        "A scientific discipline or field: physics, chemistry, molecular biology, astronomy, quantum mechanics as "
        "a field of study.",
        ("A named theory inside a field, e.g. 'general relativity'.", "Label it theory, not discipline."),
        ("science", "Too generic: label only a named discipline."),
    ),
    "enzyme": (
        "The name of an enzyme: a protein that catalyses a reaction, usually ending in '-ase' (DNA polymerase, "
        "lactase, reverse transcriptase).",
        ("A protein that is not an enzyme, e.g. 'hemoglobin'.", "Label it protein, not enzyme."),
        ("catalyst", "A common noun, not a named enzyme."),
    ),
    "protein": (
        "The name of a protein, hormone, receptor or antibody that is not an enzyme: insulin, hemoglobin, p53, "
        "collagen.",
        ("A gene and its protein share a name.", "Label the mention as protein when it names the molecule."),
        ("protein", "The common noun itself is not labelled."),
    ),
    "chemicalcompound": (
        "The name or formula of a chemical compound, molecule or material: water, carbon dioxide, ethanol, "
        "sodium chloride, DNA.",
        ("A single element, e.g. 'oxygen' or 'iron'.", "Label it chemicalelement, not chemicalcompound."),
        ("the solution", "A common noun, not a named compound."),
    ),
    "chemicalelement": (
        "The name or symbol of a chemical element: hydrogen, oxygen, iron, uranium, C, Fe.",
        ("A compound that contains the element, e.g. 'iron oxide'.", "Label the compound as chemicalcompound."),
        ("metal", "A class of elements, not an element name."),
    ),
    "astronomicalobject": (
        "The name of an astronomical object: planets, moons, stars, galaxies, comets, asteroids, nebulae "
        "(Mars, Halley's Comet, the Andromeda Galaxy).",
        ("A space mission named after a body, e.g. 'Cassini'.", "Label the mission as misc, not astronomicalobject."),
        ("the planet", "A common noun, not a name."),
    ),
    "academicjournal": (
        "The name of a scientific journal or periodical: Nature, Science, Physical Review Letters, The "
        "Astrophysical Journal.",
        ("A publisher of journals, e.g. 'Elsevier'.", "Label the publisher as organisation."),
        ("the journal", "A common noun, not a name."),
    ),
    "award": (
        "The name of a prize, medal or honour: the Nobel Prize in Physics, the Copley Medal, the Fields Medal, "
        "a fellowship of the Royal Society.",
        ("A prize named after a person, e.g. 'Nobel Prize'.", "Label the whole name as award; not the person inside."),
        ("the prize", "A common noun, not a named award."),
    ),
    "theory": (
        "The name of a scientific theory, law, principle or model: general relativity, the Big Bang, "
        "Newton's laws of motion, natural selection.",
        (
            "A field named like a theory, e.g. 'quantum mechanics' as a subject.",
            "Label it discipline when it names the field of study, theory when it names the theory.",
        ),
        ("the hypothesis", "A common noun, not a named theory."),
    ),
    "event": (
        "The name of an event: expeditions, conferences, wars, eclipses and impacts with a name, scientific "
        "revolutions.",
        ("A conference series or society.", "Label the series as event and the society as organisation."),
        ("the meeting", "A common noun, not a named event."),
    ),
    "misc": _MISC,
}

DOMAINS: dict[str, tuple[dict[str, Spec], str]] = {
    "ai": (AI, "Named entities in English Wikipedia texts about artificial intelligence (CrossNER ai)."),
    "politics": (POLITICS, "Named entities in English Wikipedia texts about politics (CrossNER politics)."),
    "science": (SCIENCE, "Named entities in English Wikipedia texts about natural science (CrossNER science)."),
}
