"""The question that section 6 of the query-language contract describes (seed-1 of the shared seed data)."""

SEED_1 = {
    "id": "seed-1",
    "heading": "Police: Artificial Intelligence",
    "date_tabled": "2025-06-24",
    "member": "Clive Lewis",
    "party": "Labour",
    "constituency": "Norwich South",
    "department": "Home Office",
    "question": (
        "To ask the Secretary of State for the Home Department, what assessment her Department has made of the "
        "potential merits of bringing forward legislative proposals relating to police use of (a) AI and (b) "
        "machine learning technology."
    ),
    "minister": "Diana Johnson",
    "answer": (
        "It is for operationally independent Chief Constables to decide when and how they deploy AI systems. They "
        "are accountable to elected Police and Crime Commissioners.\n\nAI deployment must be lawful, transparent, "
        "ethical and underpinned by robust data and governance arrangements. These principles are set out in the "
        "\u2018Covenant for Using AI in Policing\u2019 which all Chief Constables have signed. The Home Office is "
        "working closely with the AI portfolio of the National Police Chief\u2019s Council and the Police Chief "
        "Scientific Advisor to ensure policing has the resources and support it needs to abide by these principles "
        "consistently. This includes working with a range of academics from leading universities on a "
        "\u2018responsible AI checklist\u2019 and producing a detailed \u2018AI playbook for policing\u2019, akin to "
        "those produced for other government departments.\n\nAI-enabled technologies like facial recognition are "
        "valuable tools in modern policing, helping the police to quickly identify suspects and keep our "
        "communities safe. While existing laws provide a framework for its use, we recognise the need for clarity "
        "and are engaging closely with stakeholders to ensure facial recognition operates on a firm legal footing. "
        "We will set out our plans in the coming months alongside a broader package of reforms in our forthcoming "
        "White Paper on policing."
    ),
    "house": "Commons",
}
