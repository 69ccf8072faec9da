"""How fast the search page answers on a large archive in PostgreSQL.

Generates N realistic written questions (headings, question texts, answers of a few paragraphs, members,
departments and ministers, dates over seven years, words drawn with a Zipf-like skew), loads them with
COPY into a database of their own (one per size, reused when it already holds them), then starts
gunicorn on 127.0.0.1 and times real HTTP requests of the search page for several kinds of query,
cold and warm:

- cold: each request comes straight after PostgreSQL's shared buffers were filled with other pages
  (pg_prewarm of a ballast table a few times their size, in the bench's own database), so what the
  request reads of the archive comes from the operating system's page cache where that holds it, and
  from disk where not. Unless asked to (--from-disk), the script does not empty that cache, and it never
  restarts the server, so how many cold reads go to disk depends on the machine: one that gives its page cache back
  when idle (some virtual machines do) has most of the archive on disk again after a few quiet minutes,
  and the first run after a pause is the coldest. The script checks with pg_buffercache how many of the
  archive's pages were still in the buffers after each eviction and prints the most. With --from-disk
  (as root) it empties the page cache too before each cold request, so that cold requests read from disk.
- warm: the same request again and again, straight after itself (after one request that is not
  timed): the pages it needs are in PostgreSQL's buffers as far as they fit.

Every request opens its own database connection (CONN_MAX_AGE is 0), cold or warm.

It prints, per size and query: the matches, and p50 and p95 milliseconds cold and warm (with --runs above
one, the median of each run's percentiles, with the lowest and highest); then, from one in-process request
per query, how the time splits between the SQL statements and the rest (template, highlighting); with
--explain, the EXPLAIN ANALYZE of the slowest statement of each query over the goal, under the planner
settings it ran with; with --alternatives, the SQL time of other query shapes (a capped COUNT, a loose
index scan for the department list).

    .venv/bin/python bench/search.py [--sizes 100000 1000000] [--runs 3] [--repeat 15] [--cold-repeat 10]
        [--database-url postgres://postgres@127.0.0.1:5432/searchbench] [--explain] [--alternatives]

Each size gets the database <name>_<size>; it is dropped and rebuilt when it does not hold exactly the
questions this script generates for that size, and migrated when it does (new indexes are built then).
Evicting the buffers evicts other databases' pages too: the server is shared by all its databases.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import html
import json
import multiprocessing
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Bump when the generated data changes, so that databases built by an older version are rebuilt.
GENERATOR_VERSION = 1
CHUNK = 5_000
GOAL_MS = 300.0

QUERIES = [
    ("common word", "government", ""),
    ("rare word", "palantir", ""),
    ("phrase", '"mental health"', ""),
    ("field", 'member:"clive lewis"', ""),
    ("boolean", "(prison OR probation) -covid", ""),
    ("wildcard", "polic*", ""),
    # Answers quote years near the date they were tabled, so this word is only in the oldest questions.
    ("dated word", "2011", ""),
    ("common, page 200", "government", "200"),
    ("no query", "", ""),
]

# ---------------------------------------------------------------------------------------------------
# Word lists. Each list is in rough order of how often the thing comes up, most often first: draws
# from it are Zipf-like (rank r has weight 1 / r ** s).

DEPARTMENTS = [
    # name, body id, weight, who the question is addressed to, ministers, heading topics, topic words
    ("Department of Health and Social Care", 17, 14, "the Secretary of State for Health and Social Care",
     ["Karin Smyth", "Stephen Kinnock", "Ashley Dalton", "Baroness Merron"],
     ["NHS", "Mental Health Services", "Dental Services", "Hospitals", "General Practitioners", "Social Care",
      "Cancer", "Vaccination", "Pharmacy", "Hospices", "Maternity Services", "Autism", "Eating Disorders"],
     ["nhs", "patients", "mental health", "hospital", "waiting lists", "care", "gp", "treatment", "nurses",
      "dentists", "cancer", "clinical", "ambulance", "diagnosis", "trusts", "pharmacies", "social care",
      "vaccine", "covid", "hospices", "maternity", "midwives", "autism", "prescriptions"]),
    ("Home Office", 1, 12, "the Secretary of State for the Home Department",
     ["Dame Diana Johnson", "Dame Angela Eagle", "Jess Phillips", "Seema Malhotra", "Lord Hanson of Flint"],
     ["Police", "Immigration", "Asylum", "Crime", "Visas", "Knives", "Fire and Rescue Services",
      "Terrorism", "Antisocial Behaviour", "Shoplifting", "Police: Artificial Intelligence", "Fraud"],
     ["police", "officers", "crime", "asylum", "police forces", "visas", "immigration", "knife crime",
      "victims", "border", "asylum seekers", "hotels", "policing", "chief constables", "shoplifting", "fraud",
      "terrorism", "detention", "removals", "facial recognition", "small boats", "firearms"]),
    ("Department for Education", 60, 9, "the Secretary of State for Education",
     ["Catherine McKinnell", "Stephen Morgan", "Janet Daby", "Baroness Smith of Malvern"],
     ["Schools", "Pupils", "Teachers", "Special Educational Needs", "Apprentices", "Higher Education",
      "Free School Meals", "Childcare", "Academies", "Students", "Further Education", "Curriculum"],
     ["schools", "pupils", "teachers", "special educational needs", "apprenticeships", "children",
      "students", "universities", "childcare", "academies", "curriculum", "ofsted", "attendance",
      "free school meals", "tuition fees", "nurseries", "exclusions", "teaching assistants"]),
    ("Department for Work and Pensions", 29, 8, "the Secretary of State for Work and Pensions",
     ["Sir Stephen Timms", "Alison McGovern", "Andrew Western", "Torsten Bell", "Baroness Sherlock"],
     ["Universal Credit", "Personal Independence Payment", "State Pension", "Poverty", "Jobcentres",
      "Winter Fuel Payment", "Employment and Support Allowance", "Carer's Allowance", "Social Security Benefits"],
     ["claimants", "universal credit", "benefits", "state pension", "payments", "disability", "poverty",
      "jobcentre", "sanctions", "work capability assessments", "carers", "allowance", "pensioners",
      "child poverty", "overpayments", "cost of living"]),
    ("HM Treasury", 14, 7, "the Chancellor of the Exchequer",
     ["Darren Jones", "James Murray", "Emma Reynolds", "Spencer Livermore"],
     ["Income Tax", "Public Finance", "Value Added Tax", "Banks", "Pensions", "Inheritance Tax",
      "Economic Growth", "Fuel Duty", "Business Rates", "HM Revenue and Customs"],
     ["tax", "taxation", "fiscal", "revenue", "public spending", "vat", "inflation", "borrowing", "hmrc",
      "banks", "duty", "pensions", "thresholds", "personal allowance", "relief", "inheritance tax"]),
    ("Department for Environment, Food and Rural Affairs", 13, 7,
     "the Secretary of State for Environment, Food and Rural Affairs",
     ["Daniel Zeichner", "Emma Hardy", "Mary Creagh", "Baroness Hayman of Ullock"],
     ["Water Companies", "Sewage", "Agriculture", "Rivers", "Animal Welfare", "Flood Control", "Fisheries",
      "River Tame: Pollution", "Incinerators", "Waste Disposal", "Bovine Tuberculosis", "Bathing Water"],
     ["water companies", "sewage", "farmers", "rivers", "pollution", "flooding", "environment agency",
      "discharges", "environmental permits", "livestock", "fisheries", "badgers", "emissions", "waste",
      "farming", "biodiversity", "storm overflows", "food security", "bathing water", "hedgerows"]),
    ("Ministry of Justice", 54, 6, "the Secretary of State for Justice",
     ["Sarah Sackman", "Alex Davies-Jones", "Sir Nicholas Dakin", "Lord Timpson"],
     ["Prisons", "Probation", "Courts", "Legal Aid Scheme", "Prisoners", "Sentencing", "Young Offenders",
      "Tribunals", "Prisoners: Release", "Crown Court"],
     ["prison", "prisons", "prisoners", "probation", "courts", "sentences", "offenders", "court backlog",
      "legal aid", "magistrates", "tribunals", "custody", "early release", "rehabilitation", "remand",
      "victims", "jury trials", "prison officers", "probation officers"]),
    ("Ministry of Defence", 11, 6, "the Secretary of State for Defence",
     ["Luke Pollard", "Maria Eagle", "Al Carns", "Lord Coaker"],
     ["Armed Forces", "Veterans", "Military Aircraft", "Warships", "Defence Equipment", "Ukraine: Military Aid",
      "Army", "Royal Navy", "Armed Forces: Housing"],
     ["defence", "armed forces", "veterans", "personnel", "army", "royal navy", "raf", "procurement",
      "aircraft", "ships", "recruitment", "ukraine", "nato", "military", "service families", "reservists"]),
    ("Ministry of Housing, Communities and Local Government", 7, 6,
     "the Secretary of State for Housing, Communities and Local Government",
     ["Matthew Pennycook", "Jim McMahon", "Rushanara Ali", "Alex Norris", "Baroness Taylor of Stevenage"],
     ["Housing", "Homelessness", "Local Government Finance", "Planning", "Leasehold", "Social Rented Housing",
      "Building Safety", "Private Rented Housing", "Temporary Accommodation"],
     ["housing", "homes", "councils", "homelessness", "planning", "leasehold", "tenants", "landlords",
      "cladding", "rent", "affordable housing", "local authorities", "temporary accommodation", "developers",
      "green belt", "housing targets"]),
    ("Department for Transport", 27, 6, "the Secretary of State for Transport",
     ["Lilian Greenwood", "Simon Lightwood", "Mike Kane", "Lord Hendy"],
     ["Railways", "Bus Services", "Roads", "Driving Tests", "Electric Vehicles", "Potholes", "Aviation",
      "Railways: Fares", "High Speed 2 Railway Line", "Cycling"],
     ["rail", "trains", "buses", "roads", "drivers", "potholes", "passengers", "fares", "stations", "vehicles",
      "charging points", "airports", "cycling", "dvla", "motorways", "hs2", "driving tests", "network rail"]),
    ("Foreign, Commonwealth and Development Office", 208, 5,
     "the Secretary of State for Foreign, Commonwealth and Development Affairs",
     ["Hamish Falconer", "Catherine West", "Stephen Doughty", "Baroness Chapman of Darlington"],
     ["Gaza: Humanitarian Aid", "Israel", "Ukraine", "Sudan", "Overseas Aid", "Iran", "British Nationals Abroad",
      "China", "Development Aid"],
     ["humanitarian aid", "gaza", "ceasefire", "sanctions", "embassy", "diplomatic", "international partners",
      "overseas", "development", "hostages", "refugees", "conflict", "human rights", "un"]),
    ("Department for Energy Security and Net Zero", 202, 5, "the Secretary of State for Energy Security and Net Zero",
     ["Michael Shanks", "Miatta Fahnbulleh", "Kerry McCarthy", "Lord Hunt of Kings Heath"],
     ["Energy Supply", "Solar Power", "Heat Pumps", "Wind Power", "Nuclear Power", "Fuel Poverty",
      "Energy: Prices", "Carbon Capture and Storage", "Electricity: Networks"],
     ["energy", "solar", "wind", "heat pumps", "nuclear", "energy bills", "grid", "renewable", "net zero",
      "carbon", "households", "insulation", "ofgem", "tariffs", "hydrogen", "fuel poverty"]),
    ("Department for Science, Innovation and Technology", 216, 4,
     "the Secretary of State for Science, Innovation and Technology",
     ["Feryal Clark", "Chris Bryant", "Lord Vallance of Balham", "Baroness Jones of Whitchurch"],
     ["Artificial Intelligence", "Broadband", "Mobile Phones", "Cybersecurity", "Research", "Online Safety"],
     ["ai", "broadband", "digital", "data", "technology", "research", "innovation", "cyber security", "online",
      "internet", "gigabit", "5g", "algorithms", "platforms", "semiconductors", "machine learning"]),
    ("Department for Business and Trade", 214, 4, "the Secretary of State for Business and Trade",
     ["Gareth Thomas", "Justin Madders", "Douglas Alexander", "Lord Leong"],
     ["Small Businesses", "Exports", "Post Offices", "Trade Agreements", "Employment: Rights", "Steel Industry"],
     ["businesses", "exports", "trade", "tariffs", "firms", "steel", "employers", "workers", "smes",
      "investment", "supply chains", "retail", "manufacturing", "post office"]),
    ("Cabinet Office", 53, 3, "the Minister for the Cabinet Office",
     ["Nick Thomas-Symonds", "Josh Simons", "Georgia Gould", "Baroness Anderson of Stoke-on-Trent"],
     ["Civil Service", "Public Appointments", "Elections", "Government Procurement", "Ministers: Codes of Practice"],
     ["civil servants", "procurement", "contracts", "elections", "appointments", "transparency", "propriety",
      "officials", "consultancy", "government communications"]),
    ("Department for Culture, Media and Sport", 10, 3, "the Secretary of State for Culture, Media and Sport",
     ["Stephanie Peacock", "Chris Bryant", "Baroness Twycross"],
     ["Football", "BBC", "Museums and Galleries", "Tourism", "Gambling", "Music Venues", "Libraries"],
     ["sport", "football", "museums", "arts", "heritage", "tourism", "gambling", "broadcasting", "bbc",
      "libraries", "grassroots", "music venues"]),
    ("Northern Ireland Office", 21, 1, "the Secretary of State for Northern Ireland",
     ["Fleur Anderson", "Baroness Anderson of Stoke-on-Trent"],
     ["Northern Ireland Government", "Northern Ireland: Legacy", "Windsor Framework"],
     ["legacy", "troubles", "stormont", "windsor framework", "executive", "veterans"]),
]

NOUNS = [
    "funding", "support", "services", "people", "access", "data", "costs", "staff", "communities", "areas",
    "standards", "guidance", "investment", "safety", "training", "families", "capacity", "regulations",
    "demand", "delivery", "provision", "resources", "outcomes", "performance", "security", "quality", "impact",
    "infrastructure", "workforce", "schemes", "programmes", "applications", "eligibility", "consultation",
    "reforms", "targets", "contracts", "compliance", "transparency", "accountability", "technology",
    "inspections", "oversight", "safeguards", "monitoring", "evaluation", "assessments", "recruitment",
    "retention", "shortages", "backlogs", "delays", "budgets", "allocations", "grants", "charges", "fees",
    "fines", "prosecutions", "complaints", "appeals", "exemptions", "thresholds", "pilots", "trials",
    "partnerships", "stakeholders", "charities", "volunteers", "residents", "constituents", "providers",
    "regulators", "boards", "networks", "facilities", "buildings", "sites", "premises", "equipment", "systems",
    "records", "statistics", "figures", "reports", "reviews", "inquiries", "recommendations", "findings",
    "strategies", "plans", "frameworks", "policies", "legislation", "codes of practice", "protocols",
    "principles", "rights", "obligations", "duties", "responsibilities", "powers", "contingency plans",
    "waiting times", "response times", "vacancies", "salaries", "pay awards", "pensions", "apprenticeships",
    "skills", "productivity", "resilience", "maintenance", "repairs", "closures", "mergers", "expansion",
    "accessibility", "affordability", "sustainability", "diversity", "inclusion", "equality", "wellbeing",
    "cyber attacks", "misinformation", "harassment", "discrimination", "exploitation", "abuse", "neglect",
    "loneliness", "obesity", "dementia", "addiction", "suicide prevention", "air quality", "noise", "litter",
    "fly tipping", "potholes", "street lighting", "public toilets", "parking", "speed limits", "drones",
    "artificial intelligence", "machine learning", "cloud computing", "biometrics", "cctv", "body cameras",
    "tasers", "spit hoods", "dogs", "horses", "bees", "pesticides", "microplastics", "asbestos", "radon",
]

ADJECTIVES = [
    "local", "national", "public", "new", "rural", "independent", "additional", "specialist", "long-term",
    "regional", "digital", "financial", "statutory", "vulnerable", "young", "older", "disabled", "coastal",
    "urban", "frontline", "temporary", "emergency", "annual", "current", "voluntary", "private", "community",
    "international", "mandatory", "interim", "seasonal", "cross-border", "devolved", "remote",
]

GROUPS = [
    "children", "older people", "disabled people", "veterans", "young people", "carers", "women", "families",
    "pensioners", "small businesses", "farmers", "students", "refugees", "care leavers", "people with autism",
    "rough sleepers", "ethnic minority communities", "low-income households", "key workers", "apprentices",
]

PLACES = [
    "England", "England and Wales", "the UK", "Scotland", "Wales", "Northern Ireland", "London", "the North East",
    "the North West", "Yorkshire and the Humber", "the East Midlands", "the West Midlands", "the East of England",
    "the South East", "the South West", "Greater Manchester", "Birmingham", "Leeds", "Liverpool", "Bristol",
    "Sheffield", "Newcastle", "Norfolk", "Cornwall", "Cumbria", "Kent", "Devon", "Lincolnshire", "Essex",
    "Hertfordshire", "Surrey", "Bedfordshire", "Suffolk", "Northumberland", "Somerset", "Dorset",
]

# The rare things: companies, bodies, schemes and reports, mentioned now and then.
RARE = [
    "the Environment Agency", "the Care Quality Commission", "Ofsted", "Ofwat", "Ofgem", "Ofcom",
    "the National Audit Office", "the Office for Budget Responsibility", "Network Rail", "Homes England",
    "Natural England", "Historic England", "the Crown Prosecution Service", "HM Prison and Probation Service",
    "the Met Office", "the DVSA", "the Student Loans Company", "the Charity Commission", "the Electoral Commission",
    "the Information Commissioner's Office", "UK Research and Innovation", "the British Council",
    "Great British Energy", "the National Wealth Fund", "the Planning Inspectorate", "Thames Water",
    "Southern Water", "United Utilities", "Royal Mail", "the Post Office", "the Horizon IT system", "Serco",
    "Capita", "Mitie", "G4S", "Babcock", "Fujitsu", "BAE Systems", "Rolls-Royce", "Thales", "Airbus", "Leonardo",
    "Sellafield", "Sizewell C", "Hinkley Point C", "the Coal Authority", "Grenfell Tower", "Crossrail",
    "the Elizabeth line", "Huawei", "TikTok", "Meta", "Google", "Microsoft", "Amazon", "Deliveroo", "Uber",
    "the Godley Brook", "Wilson Brook", "the Baroness Casey Review", "the Covenant for Using AI in Policing",
    "the Industrial Emissions Directive", "the Windrush Compensation Scheme", "the Infected Blood Inquiry",
    "the Post Office Capture software", "the Kickstart Scheme", "the Household Support Fund",
    "the Levelling Up Fund", "the Shared Prosperity Fund", "the Boiler Upgrade Scheme", "the Warm Homes Plan",
    "Operation Soteria", "Project Gigabit", "the Rwanda scheme", "Taser 10",
]
# Named in about one question in 5,000: the rare word to look for.
RAREST = "Palantir"
RAREST_CHANCE = 0.0002

OPENINGS = [
    "what assessment {he} has made of the potential merits of {np}",
    "what steps {he} is taking to {verb} {np} in {place}",
    "how many {np} there were in (a) {place} and (b) {place2} in each of the last {few} years",
    "whether {his} Department plans to {verb} {np}",
    "what discussions {his} Department has had with {rare} on {np}",
    "what (a) safeguards and (b) oversight {his} Department has in place to monitor {np}",
    "with reference to {rare}, what estimate {his} Department has made of the cost of {np}",
    "whether {his} Department holds data on the number of {np} issued in each year since {year}",
    "what recent assessment {he} has made of the adequacy of {np} for {group}",
    "what funding {his} Department has allocated to {np} in {place} in {year}",
    "if {he} will make an assessment of the impact of {np} on {group}",
    "what progress {his} Department has made on {verb_ing} {np}",
    "whether {he} has had recent discussions with {rare} on the potential impact of {np} on {group}",
    "how much {his} Department has spent on {np} since {year}",
    "what plans {he} has to review {np}",
]
LORDS_OPENINGS = [
    "what assessment they have made of {np}",
    "what steps they are taking to {verb} {np} in {place}",
    "what plans they have to {verb} {np} for {group}",
    "whether they intend to review {np}, in the light of {rare}",
    "how many {np} there were in {place} in {year}",
]
TAILS = [
    "", "", "", "; and if {he} will make a statement", "; and if {he} will publish that assessment",
    "; and what the timetable is for that work", ", broken down by region", ", by (a) age and (b) sex",
]
VERBS = ["improve", "increase", "support", "reduce", "expand", "protect", "review", "strengthen", "tackle",
         "monitor", "fund", "publish data on", "simplify", "speed up", "address"]
VERB_INGS = ["improving", "increasing", "supporting", "reducing", "expanding", "protecting", "reviewing",
             "tackling", "monitoring", "delivering"]

SENTENCES = [
    "The Government is committed to {verb_ing} {np}.",
    "{dept_short} is working closely with {rare} to ensure that {np} meets the needs of {group}.",
    "In {year}, the Government announced £{amount} million to support {np} in {place}.",
    "Information on {np} is not held centrally.",
    "Officials continue to engage with {rare} on {np} and will keep this under review.",
    "It is for {rare} to decide how {np} is delivered locally.",
    "We will set out further details on {np} in due course.",
    "As of {month} {year}, there were {number} {np} in {place}.",
    "The Department published its {adj} strategy in {month} {year}, which sets out our approach to {np}.",
    "This includes {np}, {np2} and {np3}.",
    "{rare} has received {number} applications for {np} since {year}.",
    "The information requested could only be obtained at disproportionate cost.",
    "Decisions on {np} are a matter for {rare}.",
    "The Government recognises the importance of {np} for {group}.",
    "Our Plan for Change will deliver {np} across {place}.",
    "The table below sets out the number of {np} in each year since {year}.",
    "We are investing £{amount} million in {np} this year, and a further £{amount2} million next year.",
    "Further information is available on GOV.UK.",
    "The Government will continue to work with {rare} and other partners to {verb} {np}.",
    "I refer the hon. Member to the answer I gave on {day} {month} {year} to Question {uin}.",
    "The Department does not hold data on {np} in the format requested.",
    "Local authorities have a statutory duty to {verb} {np} for {group}.",
    "The Government has no plans to {verb} {np} at this time.",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "September", "October", "November",
          "December"]

FIRST_NAMES = [
    "James", "Sarah", "David", "Emma", "John", "Helen", "Andrew", "Rachel", "Mark", "Louise", "Paul", "Catherine",
    "Peter", "Anna", "Richard", "Claire", "Stephen", "Rebecca", "Daniel", "Victoria", "Simon", "Alison", "Jonathan",
    "Kate", "Ian", "Joanna", "Chris", "Fiona", "Tom", "Jessica", "Matthew", "Lucy", "Graham", "Nadia", "Imran",
    "Priya", "Rosie", "Liam", "Bell", "Marsha",
]
SURNAMES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "Khan",
    "Hughes", "Edwards", "Turner", "Hill", "Moore", "Cooper", "Ward", "Morris", "King", "Baker", "Harrison",
    "Morgan", "Allen", "Begum", "Phillips", "Mitchell", "Carter", "Shah", "Reed", "Murray", "Hussain", "Lloyd",
    "Fletcher", "Osborne", "Ribeiro-Addy", "Hobhouse", "Dyke", "Whittome",
]
TOWNS = [
    "Norwich", "Bristol", "Leeds", "Sheffield", "Nottingham", "Leicester", "Coventry", "Bradford", "Hull",
    "Plymouth", "Stoke-on-Trent", "Wolverhampton", "Derby", "Southampton", "Portsmouth", "Brighton", "Reading",
    "Bolton", "Wigan", "Oldham", "Stockport", "Blackburn", "Preston", "Blackpool", "Lancaster", "Carlisle",
    "Durham", "Sunderland", "Gateshead", "Middlesbrough", "York", "Harrogate", "Wakefield", "Barnsley",
    "Doncaster", "Rotherham", "Lincoln", "Grimsby", "Peterborough", "Cambridge", "Ipswich", "Colchester",
    "Chelmsford", "Basildon", "Southend", "Luton", "Bedford", "Milton Keynes", "Northampton", "Oxford", "Swindon",
    "Gloucester", "Cheltenham", "Worcester", "Hereford", "Shrewsbury", "Telford", "Stafford", "Walsall",
    "Dudley", "Solihull", "Warwick", "Rugby", "Exeter", "Torbay", "Truro", "Bath", "Salisbury", "Bournemouth",
    "Poole", "Winchester", "Guildford", "Woking", "Crawley", "Hastings", "Eastbourne", "Canterbury", "Dover",
    "Maidstone", "Dartford", "Croydon", "Bromley", "Ealing", "Hackney", "Islington", "Lambeth", "Lewisham",
    "Southwark", "Tottenham", "Walthamstow", "Cardiff", "Swansea", "Newport", "Wrexham", "Glasgow", "Edinburgh",
    "Aberdeen", "Dundee", "Inverness", "Belfast", "Derry", "Newry", "Halifax", "Huddersfield", "Burnley",
    "Hyde", "Macclesfield", "Crewe", "Chester", "Warrington", "St Helens", "Southport", "Barrow", "Kendal",
    "Scarborough", "Whitby", "Boston", "Skegness", "Grantham", "Mansfield", "Chesterfield", "Loughborough",
]
COMPASS = ["", " North", " South", " East", " West", " Central"]
PARTIES = [("Labour", 60), ("Conservative", 18), ("Liberal Democrat", 11), ("Scottish National Party", 2),
           ("Reform UK", 2), ("Independent", 3), ("Green Party", 1), ("Plaid Cymru", 1),
           ("Democratic Unionist Party", 1), ("Sinn Féin", 1)]
LORDS_PARTIES = [("Conservative", 35), ("Labour", 25), ("Crossbench", 25), ("Liberal Democrat", 12),
                 ("Non-affiliated", 3)]
LORDS_TITLES = ["Lord", "Baroness"]
FIXTURE_MEMBER = ("Clive Lewis", "Labour", "Norwich South")
FIXTURE_MEMBER_RANK = 20


def cumulative(count: int, s: float) -> list[float]:
    return list(accumulate(1 / (rank ** s) for rank in range(1, count + 1)))


class Zipf:
    """Draws from a list, rank r (from 1) with weight 1 / r ** s."""

    def __init__(self, items: list, s: float = 1.0) -> None:
        self.items = items
        self.cum = cumulative(len(items), s)
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random):
        return self.items[bisect.bisect(self.cum, rng.random() * self.total)]


def members(rng: random.Random) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """650 MPs (name, party, constituency) and 200 peers, in the order of how often they ask."""
    party_names = [name for name, _ in PARTIES]
    party_weights = [weight for _, weight in PARTIES]
    names = [f"{first} {last}" for first in FIRST_NAMES for last in SURNAMES]
    rng.shuffle(names)
    places = [town + side for town in TOWNS for side in COMPASS if town + side != FIXTURE_MEMBER[2]]
    rng.shuffle(places)
    commons = [(names[i], rng.choices(party_names, party_weights)[0], places[i]) for i in range(649)]
    commons.insert(FIXTURE_MEMBER_RANK - 1, FIXTURE_MEMBER)
    lords_parties = [name for name, _ in LORDS_PARTIES]
    lords_weights = [weight for _, weight in LORDS_PARTIES]
    lords = []
    for i in range(200):
        title = LORDS_TITLES[i % 2]
        lords.append((f"{title} {SURNAMES[i % len(SURNAMES)]} of {TOWNS[(i * 7) % len(TOWNS)]}",
                      rng.choices(lords_parties, lords_weights)[0], ""))
    return commons, lords


def sitting_days() -> list[dt.date]:
    """Weekdays from 2019 to 2025, less most of August and the Christmas weeks."""
    day, end, days = dt.date(2019, 1, 7), dt.date(2025, 12, 19), []
    while day <= end:
        recess = (day.month == 8 and day.day > 3) or (day.month == 12 and day.day > 20)
        if day.weekday() < 5 and not recess:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


class Generator:
    """Builds question number `index` of an archive of `total`, the same for the same seed and random state."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.commons, self.lords = members(rng)
        self.pick_commons = Zipf(self.commons, 0.8)
        self.pick_lords = Zipf(self.lords, 0.8)
        self.member_ids = {name: 4000 + i for i, (name, _, _) in enumerate(self.commons + self.lords)}
        self.department_cum = list(accumulate(d[2] for d in DEPARTMENTS))
        self.pick_noun = Zipf(NOUNS, 1.0)
        self.pick_adjective = Zipf(ADJECTIVES, 1.0)
        self.pick_group = Zipf(GROUPS, 0.9)
        self.pick_place = Zipf(PLACES, 1.0)
        self.pick_rare = Zipf(RARE, 1.1)
        self.topic_words = {d[0]: Zipf(d[6], 0.9) for d in DEPARTMENTS}
        self.topics = {d[0]: Zipf(d[5], 0.9) for d in DEPARTMENTS}
        self.pick_subtopic = Zipf([noun.title() for noun in NOUNS], 1.0)
        self.days = sitting_days()
        self.fixture_paragraphs = fixture_paragraphs()

    def noun_phrase(self, rng: random.Random, topic) -> str:
        shape = rng.random()
        if shape < 0.3:
            return f"{self.pick_adjective(rng)} {topic(rng)}"
        if shape < 0.5:
            return f"{topic(rng)} {self.pick_noun(rng)}"
        if shape < 0.65:
            return f"{self.pick_noun(rng)} for {self.pick_group(rng)}"
        if shape < 0.8:
            return f"the {self.pick_noun(rng)} of {topic(rng)}"
        if shape < 0.9:
            return f"{self.pick_adjective(rng)} {self.pick_noun(rng)}"
        return topic(rng)

    def fill(self, rng: random.Random, template: str, topic, pronouns: dict, year: int) -> str:
        values = {
            "np": self.noun_phrase(rng, topic), "np2": self.noun_phrase(rng, topic),
            "np3": self.noun_phrase(rng, topic), "place": self.pick_place(rng), "place2": self.pick_place(rng),
            "group": self.pick_group(rng), "rare": self.pick_rare(rng), "verb": rng.choice(VERBS),
            "verb_ing": rng.choice(VERB_INGS), "adj": self.pick_adjective(rng),
            "year": rng.randint(max(2010, year - 8), year), "few": rng.choice(["three", "five", "ten"]),
            "amount": rng.choice([2, 5, 10, 15, 20, 50, 100, 250, 1.5, 4.5, 37]),
            "amount2": rng.choice([3, 8, 12, 30, 75]), "number": rng.randint(2, 40_000),
            "month": rng.choice(MONTHS), "day": rng.randint(1, 28), "uin": rng.randint(1000, 99_999),
            **pronouns,
        }
        return template.format(**values)

    def row(self, rng: random.Random, index: int, total: int) -> dict:
        day = self.days[index * len(self.days) // total]
        department = rng.choices(DEPARTMENTS, cum_weights=self.department_cum)[0]
        name, body_id, _, addressee, ministers, _, _ = department
        topic = self.topic_words[name]
        lords = rng.random() < 0.15
        member = self.pick_lords(rng) if lords else self.pick_commons(rng)
        he = rng.random() < 0.5
        pronouns = {"he": "he" if he else "she", "his": "his" if he else "her"}
        heading_topic = self.topics[name](rng)
        if ":" not in heading_topic and rng.random() < 0.8:
            heading = f"{heading_topic}: {self.pick_subtopic(rng)}"
        else:
            heading = heading_topic
        if lords:
            body = self.fill(rng, rng.choice(LORDS_OPENINGS), topic, pronouns, day.year)
            question = f"To ask His Majesty's Government {body}."
        else:
            body = self.fill(rng, rng.choice(OPENINGS), topic, pronouns, day.year)
            tail = self.fill(rng, rng.choice(TAILS), topic, pronouns, day.year)
            question = f"To ask {addressee}, {body}{tail}."
            if rng.random() < RAREST_CHANCE:
                question = (f"To ask {addressee}, what discussions {pronouns['his']} Department has had with "
                            f"{RAREST} on {self.noun_phrase(rng, topic)}.")
        paragraphs = []
        withdrawn = rng.random() < 0.01
        recent = (self.days[-1] - day).days < 30
        answered = not withdrawn and rng.random() < (0.5 if recent else 0.95)
        if answered:
            short = re.sub(r"^(Department|Ministry) ", r"The \1 ", name)
            for _ in range(rng.choice([1, 2, 2, 3, 3, 4, 5])):
                if rng.random() < 0.005:
                    paragraphs.append(rng.choice(self.fixture_paragraphs))
                    continue
                sentences = [
                    self.fill(rng, rng.choice(SENTENCES), topic, {**pronouns, "dept_short": short}, day.year)
                    for _ in range(rng.randint(2, 5))
                ]
                if rng.random() < 0.01:
                    sentences.append("During the covid-19 pandemic, " + self.noun_phrase(rng, topic)
                                     + " was affected by " + self.noun_phrase(rng, topic) + ".")
                paragraphs.append(" ".join(s[0].upper() + s[1:] for s in sentences))
        answer_text = "\n\n".join(paragraphs)
        minister = rng.choice(ministers) if answered else ""
        house = "Lords" if lords else "Commons"
        uin = f"HL{1000 + index % 9000}" if lords else str(1 + index % 250_000)
        return {
            "external_id": str(1_000_000 + index), "uin": uin, "house": house, "heading": heading,
            "question_text": question, "answer_text": answer_text,
            "answer_html": "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
            "date_tabled": day, "date_for_answer": day + dt.timedelta(days=rng.choice([3, 5, 7])),
            "date_answered": day + dt.timedelta(days=rng.randint(2, 40)) if answered else None,
            "is_named_day": rng.random() < 0.1, "is_withdrawn": withdrawn,
            "asking_member_id": self.member_ids[member[0]],
            "asking_member_name": member[0], "asking_member_party": member[1],
            "asking_member_constituency": member[2], "answering_body_id": body_id, "answering_body_name": name,
            "answering_member_name": minister,
            "answering_member_role": f"Minister of State ({name})" if minister else "",
        }


def fixture_paragraphs() -> list[str]:
    seeds = json.loads((ROOT / "questions/fixtures/seed_questions.json").read_text())
    paragraphs = {p for seed in seeds for p in seed["answer"].split("\n\n") if p.strip() and RAREST not in p}
    return sorted(paragraphs)


COLUMNS = [
    "external_id", "uin", "house", "heading", "question_text", "answer_html", "answer_text", "date_tabled",
    "date_for_answer", "date_answered", "date_holding_answer", "date_answer_corrected", "is_named_day",
    "is_withdrawn", "answer_is_holding", "grouped_uins", "attachments", "asking_member_id", "asking_member_name",
    "asking_member_party", "asking_member_constituency", "answering_body_id", "answering_body_name",
    "answering_member_id", "answering_member_name", "answering_member_role", "url", "source_id",
    "list_signature", "created_at", "updated_at",
]
NORM_FIELDS = ["heading", "question", "answer", "member", "party", "constituency", "department", "minister",
               "house", "uin"]
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    return str(value)


def generate_chunk(task: tuple[int, int, int, int]) -> bytes:
    """COPY text for questions start..start+count of an archive of `total` built from `seed`."""
    from questions.search import document

    seed, start, count, total = task
    generator = _generator(seed)
    rng = random.Random(seed * 1_000_003 + start)
    lines = []
    for index in range(start, start + count):
        record = generator.row(rng, index, total)
        moment = dt.datetime.combine(record["date_tabled"], dt.time(9 + index % 8), tzinfo=dt.UTC)
        record.update(
            date_holding_answer=None, date_answer_corrected=None, answer_is_holding=False, grouped_uins="[]",
            attachments="[]", answering_member_id=3000 + index % 60 if record["answering_member_name"] else None,
            url="", source_id=None, list_signature="", created_at=moment.isoformat(),
            updated_at=moment.isoformat(),
        )
        norms = document({
            "heading": record["heading"], "question": record["question_text"], "answer": record["answer_text"],
            "member": record["asking_member_name"], "party": record["asking_member_party"],
            "constituency": record["asking_member_constituency"], "department": record["answering_body_name"],
            "minister": record["answering_member_name"], "house": record["house"], "uin": record["uin"],
        })
        values = [copy_value(record[column]) for column in COLUMNS]
        values.extend(copy_value(norms[field]) for field in NORM_FIELDS)
        lines.append("\t".join(values))
    return ("\n".join(lines) + "\n").encode()


_generators: dict[int, Generator] = {}


def _generator(seed: int) -> Generator:
    if seed not in _generators:
        _generators[seed] = Generator(seed)
    return _generators[seed]


# ---------------------------------------------------------------------------------------------------
# Databases.

def database_url(base: str, n: int) -> str:
    parts = urllib.parse.urlsplit(base)
    name = parts.path.lstrip("/") or "searchbench"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}_{n}"))


def admin_url(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def marker(n: int, seed: int) -> str:
    return f"searchbench v{GENERATOR_VERSION}: {n} questions, seed {seed}"


def is_loaded(url: str, n: int, seed: int) -> bool:
    import psycopg

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            return False
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT obj_description(to_regclass('questions_question'), 'pg_class')").fetchone()
        if not row or row[0] != marker(n, seed):
            return False
        return conn.execute("SELECT count(*) FROM questions_question").fetchone()[0] == n


def recreate(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def run_manage(url: str, *args: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def load(url: str, n: int, seed: int, workers: int) -> dict[str, float]:
    """Fill a fresh database with n questions; the seconds each step took."""
    import psycopg

    timings = {}
    started = time.perf_counter()
    recreate(url)
    run_manage(url, "migrate", "--no-input")
    run_manage(url, "createcachetable")
    timings["migrate"] = time.perf_counter() - started

    with multiprocessing.get_context("fork").Pool(workers) as pool, psycopg.connect(url) as conn:
        # Secondary indexes are built after the rows are in: much faster than keeping them up to date.
        indexes = conn.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'questions_question'::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
        ).fetchall()
        for index_name, _ in indexes:
            conn.execute(f'DROP INDEX "{index_name}"')
        conn.execute("TRUNCATE questions_question CASCADE")
        started = time.perf_counter()
        columns = ", ".join(COLUMNS + [f"norm_{field}" for field in NORM_FIELDS])
        tasks = [(seed, start, min(CHUNK, n - start), n) for start in range(0, n, CHUNK)]
        done = 0
        with conn.cursor().copy(f"COPY questions_question ({columns}) FROM STDIN WITH (FREEZE)") as copy:
            for data in pool.imap(generate_chunk, tasks):
                copy.write(data)
                done += CHUNK
                if done % 100_000 == 0:
                    print(f"  {min(done, n):,} questions generated and copied, "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        conn.commit()
        timings["generate+copy"] = time.perf_counter() - started

    started = time.perf_counter()

    def build(definition: str) -> None:
        with psycopg.connect(url, autocommit=True) as index_conn:
            index_conn.execute("SET maintenance_work_mem = '1GB'")
            index_conn.execute(definition)

    # The biggest first, so that the two connections finish at about the same time.
    order = sorted(indexes, key=lambda item: ("answer" not in item[0], "question" not in item[0]))
    with ThreadPoolExecutor(max(1, min(workers, 2))) as pool:
        list(pool.map(build, [definition for _, definition in order]))
    timings["indexes"] = time.perf_counter() - started

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) questions_question")
        conn.execute(f"COMMENT ON TABLE questions_question IS '{marker(n, seed)}'")
    timings["vacuum+analyze"] = time.perf_counter() - started
    return timings


def table_size(url: str) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT pg_size_pretty(pg_table_size('questions_question')), "
            "pg_size_pretty(pg_indexes_size('questions_question'))"
        ).fetchone()


# ---------------------------------------------------------------------------------------------------
# Timing the page.

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "DEBUG": "0"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--timeout", "300", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/help/", timeout=5).read()
            return server, base
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("gunicorn did not start")


def page_path(query: str, page: str) -> str:
    params = {"q": query} if query else {}
    if page:
        params["page"] = page
    return "/?" + urllib.parse.urlencode(params) if params else "/"


COUNT_RE = re.compile(r"(\d+) questions? match")


def fetch(base: str, path: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=600) as response:
        body = response.read().decode()
    return (time.perf_counter() - started) * 1000, body


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ballast(url: str) -> None:
    """A table of the bench's database a few times the size of shared buffers, read into them to evict
    every other page (see the module's docstring)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
        buffers = int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0])
        # Rows of 1,600 bytes stay uncompressed and in line: five to a page.
        rows = 5 * BALLAST_TIMES * buffers
        exists = conn.execute("SELECT to_regclass('bench_ballast') IS NOT NULL").fetchone()[0]
        if not exists or conn.execute("SELECT count(*) FROM bench_ballast").fetchone()[0] != rows:
            conn.execute("DROP TABLE IF EXISTS bench_ballast")
            conn.execute("CREATE TABLE bench_ballast AS SELECT g, repeat(md5(g::text), 50) AS pad "
                         "FROM generate_series(1, %s) g", [rows])
            conn.execute("VACUUM bench_ballast")
            # Written out now, not by a checkpoint in the middle of the timed requests.
            conn.execute("CHECKPOINT")


# How many times the size of shared buffers the ballast is: a page used often has a usage count of up to 5,
# and the clock sweep has to pass it that many times before it is evicted.
BALLAST_TIMES = 6
ARCHIVE_PAGES = """
SELECT count(*) FROM pg_buffercache b JOIN pg_class c ON b.relfilenode = pg_relation_filenode(c.oid)
WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (c.oid = 'questions_question'::regclass
       OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'questions_question'::regclass)
       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'questions_question'::regclass))
"""


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def evict(url: str, from_disk: bool = False) -> int:
    """Fill PostgreSQL's shared buffers with the ballast, and with `from_disk` empty the operating system's page
    cache too; how many pages of the archive were left in PostgreSQL's buffers."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_prewarm('bench_ballast', 'buffer')")
        left = conn.execute(ARCHIVE_PAGES).fetchone()[0]
    if from_disk:
        os.sync()
        DROP_CACHES.write_text("1\n")
    return left


def measure(base: str, url: str, repeat: int, cold_repeat: int, from_disk: bool) -> tuple[list[dict], int]:
    """Each query's cold and warm milliseconds; and the most pages of the archive left in PostgreSQL's buffers
    after an eviction."""
    results, left = [], 0
    for kind, query, page in QUERIES:
        path = page_path(query, page)
        results.append({"kind": kind, "query": query + (f" (page {page})" if page else ""), "path": path,
                        "matches": None, "cold": [], "warm": []})
    # Cold first, round by round: an eviction before every request.
    for _ in range(cold_repeat):
        for result in results:
            left = max(left, evict(url, from_disk))
            ms, body = fetch(base, result["path"])
            result["cold"].append(ms)
            found = COUNT_RE.search(body)
            result["matches"] = int(found.group(1)) if found else None
    for result in results:
        fetch(base, result["path"])
        result["warm"] = [fetch(base, result["path"])[0] for _ in range(repeat)]
    return results, left


SET_LOCAL = re.compile(r"SET LOCAL (\w+) (?:= (\w+)|TO DEFAULT)")


def breakdown(url: str, path: str) -> tuple[float, list[tuple[float, str, dict[str, str]]]]:
    """The median of three in-process requests: its total milliseconds, and each SQL statement's milliseconds
    with the planner settings it ran under (what the search set with SET LOCAL)."""
    from django.db import connection
    from django.test import Client
    from psycopg.pq import TransactionStatus

    runs: list[tuple[float, list[tuple[float, str, dict[str, str]]]]] = []
    planner: dict[str, str] = {}

    def timer(execute, sql, params, many, context):
        if connection.connection.info.transaction_status == TransactionStatus.IDLE:
            # This statement starts a transaction: the SET LOCALs of the last one ended with it.
            planner.clear()
        for name, value in SET_LOCAL.findall(sql):
            if value:
                planner[name] = value
            else:
                planner.pop(name, None)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            runs[-1][1].append((elapsed, connection.ops.compose_sql(sql, params) if params else sql,
                                dict(planner)))

    use_database(url)
    client = Client()
    client.get(path)
    for _ in range(3):
        runs.append((0.0, []))
        started = time.perf_counter()
        with connection.execute_wrapper(timer):
            client.get(path)
        runs[-1] = ((time.perf_counter() - started) * 1000, runs[-1][1])
    return sorted(runs, key=lambda run: run[0])[1]


_django_ready = False


def use_database(url: str) -> None:
    """Point this process's Django at `url` (set up on first use)."""
    global _django_ready
    if not _django_ready:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()
        _django_ready = True
    from django.db import connection

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    if connection.settings_dict["NAME"] != name:
        connection.close()
        connection.settings_dict["NAME"] = name


def statement_kind(sql: str) -> str:
    if "COUNT(*)" in sql:
        return "count"
    if "DISTINCT" in sql and "answering_body_name" in sql:
        return "departments"
    if "LIMIT" in sql:
        return "page"
    return "other"


def explain(url: str, sql: str, planner: dict[str, str]) -> str:
    """EXPLAIN ANALYZE of a statement under the planner settings it ran with; not its time limit, so that a
    statement that was cut short shows its whole plan."""
    import psycopg

    with psycopg.connect(url) as conn:
        for name, value in planner.items():
            if name != "statement_timeout":
                conn.execute(f"SET LOCAL {name} = {value}")
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
    settings = "".join(f"SET LOCAL {name} = {value}; " for name, value in planner.items())
    return settings + "\n" + "\n".join(row[0] for row in rows)


COUNT_CAP = 1000
LOOSE_DEPARTMENTS = """
WITH RECURSIVE d(name) AS (
    SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > ''
    UNION ALL
    SELECT (SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > d.name)
    FROM d WHERE d.name IS NOT NULL
)
SELECT name FROM d WHERE name IS NOT NULL
"""


def alternatives(url: str) -> list[tuple[str, float, float, float]]:
    """For each query: milliseconds of the full COUNT, of a COUNT capped at COUNT_CAP + 1 rows, and of page 1."""
    from django.db import connection

    from questions.models import Question
    from questions.searching import search

    use_database(url)

    def median_ms(sql: str, params) -> float:
        times = []
        with connection.cursor() as cursor:
            for _ in range(3):
                started = time.perf_counter()
                cursor.execute(sql, params)
                cursor.fetchall()
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    found = []
    for kind, query, page in QUERIES:
        if page:
            continue
        queryset = search(query) if query else Question.objects.order_by("-date_tabled", "-id")
        ids, params = queryset.order_by().values("id").query.sql_with_params()
        page_sql, page_params = queryset[:20].query.sql_with_params()
        found.append((kind, median_ms(f"SELECT count(*) FROM ({ids}) s", params),
                      median_ms(f"SELECT count(*) FROM ({ids} LIMIT {COUNT_CAP + 1}) s", params),
                      median_ms(page_sql, page_params)))
    distinct = "SELECT DISTINCT answering_body_name FROM questions_question WHERE answering_body_name <> '' ORDER BY 1"
    found.append(("departments", median_ms(distinct, ()), median_ms(LOOSE_DEPARTMENTS, ()), 0.0))
    return found


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/searchbench",
                        help="PostgreSQL server and base name; size N uses the database <name>_<N>")
    parser.add_argument("--repeat", type=int, default=15,
                        help="warm requests per query, each straight after the same request")
    parser.add_argument("--cold-repeat", type=int, default=10,
                        help="cold requests per query, each straight after PostgreSQL's buffers were evicted")
    parser.add_argument("--runs", type=int, default=3,
                        help="times the cold and warm requests are made; the table gives the median of each "
                             "run's percentiles")
    parser.add_argument("--from-disk", action="store_true",
                        help="cold requests also follow emptying the operating system's page cache, so that they "
                             f"read from disk (needs write access to {DROP_CACHES}, which only root has)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating questions")
    parser.add_argument("--alternatives", action="store_true",
                        help=f"also time other query shapes: a COUNT capped at {COUNT_CAP} and a loose index scan "
                             "for the department list")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of the slowest statement of each query over the goal")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.from_disk and not os.access(DROP_CACHES, os.W_OK):
        parser.error(f"--from-disk needs write access to {DROP_CACHES} (root)")

    import psycopg

    print(machine())
    with psycopg.connect(admin_url(args.database_url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")}
    print(f"PostgreSQL {version}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))

    rows, splits, plans, shapes = [], [], [], []
    for n in args.sizes:
        url = database_url(args.database_url, n)
        if is_loaded(url, n, args.seed):
            print(f"{n:,} questions: reusing {url}", flush=True)
            started = time.perf_counter()
            run_manage(url, "migrate", "--no-input")
            print(f"  migrated in {time.perf_counter() - started:.0f} s", flush=True)
        else:
            print(f"{n:,} questions: loading into {url}", flush=True)
            timings = load(url, n, args.seed, args.workers)
            total = sum(timings.values())
            print(f"  loaded in {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
                  + f"), {n / timings['generate+copy']:,.0f} questions/s generated and copied", flush=True)
        heap, indexes = table_size(url)
        print(f"  questions_question: table {heap}, indexes {indexes}", flush=True)

        ballast(url)
        server, base = start_server(url)
        load_before = os.getloadavg()
        try:
            measured = [measure(base, url, args.repeat, args.cold_repeat, args.from_disk) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait(timeout=30)
        load_after = os.getloadavg()
        print(f"  load average (1, 5, 15 min) before the timed requests {load_before[0]:.2f} {load_before[1]:.2f} "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
              f"at most {max(left for _, left in measured)} pages of the archive left in shared buffers after an "
              "eviction", flush=True)
        for position, result in enumerate(measured[0][0]):
            runs = [results[position] for results, _ in measured]
            rows.append((n, result["kind"], result["query"], result["matches"],
                         *([percentile(run[temperature], p) for run in runs]
                           for temperature in ("cold", "warm") for p in (50, 95))))
            total_ms, statements = breakdown(url, result["path"])
            by_kind: dict[str, float] = {}
            for elapsed, sql, _ in statements:
                kind = statement_kind(sql)
                by_kind[kind] = by_kind.get(kind, 0.0) + elapsed
            sql_ms = sum(elapsed for elapsed, _, _ in statements)
            splits.append((n, result["kind"], total_ms, by_kind.get("count", 0.0), by_kind.get("page", 0.0),
                           by_kind.get("departments", 0.0), by_kind.get("other", 0.0), total_ms - sql_ms))
            if args.explain and max(statistics.median(rows[-1][5]), statistics.median(rows[-1][7])) > GOAL_MS \
                    and statements:
                slowest = max(statements, key=lambda item: item[0])
                plans.append((n, result["kind"], slowest[1], explain(url, slowest[1], slowest[2])))
        if args.alternatives:
            shapes.extend((n, *shape) for shape in alternatives(url))

    print()
    print(f"p50 and p95 of each run; with more than one run, their median (lowest–highest) over {args.runs} runs; "
          + ("cold: from disk (PostgreSQL's buffers and the page cache emptied)" if args.from_disk
             else "cold: PostgreSQL's buffers emptied, the page cache left as it was"))
    print(f"{'':>9}  {'':<17} {'':<36} {'':>8} {'cold':>33} {'warm':>33}")
    print(f"{'size':>9}  {'query kind':<17} {'query':<36} {'matches':>8} {'p50 ms':>16} {'p95 ms':>16} "
          f"{'p50 ms':>16} {'p95 ms':>16}")
    for n, kind, query, matches, *figures in rows:
        flag = "  over goal" if statistics.median(figures[1]) > GOAL_MS or statistics.median(figures[3]) > GOAL_MS \
            else ""
        print(f"{n:>9,}  {kind:<17} {query:<36} {matches if matches is not None else '-':>8} "
              + " ".join(f"{spread(values):>16}" for values in figures) + flag)
    print()
    print("The median of three in-process requests per query, milliseconds: the whole request, its SQL by "
          "statement, the rest")
    print(f"{'size':>9}  {'query kind':<17} {'request':>8} {'count':>8} {'page':>8} {'depts':>8} {'other':>8} "
          f"{'not SQL':>8}")
    for n, kind, total_ms, count, page, departments, other, rest in splits:
        print(f"{n:>9,}  {kind:<17} {total_ms:>8.0f} {count:>8.0f} {page:>8.0f} {departments:>8.0f} "
              f"{other:>8.0f} {rest:>8.0f}")
    if shapes:
        print()
        print("Other query shapes, SQL alone, median of three, milliseconds (departments: DISTINCT, then a loose "
              "index scan)")
        print(f"{'size':>9}  {'query kind':<17} {'COUNT':>8} {f'COUNT<={COUNT_CAP}':>11} {'page 1':>8}")
        for n, kind, full, capped, first in shapes:
            print(f"{n:>9,}  {kind:<17} {full:>8.0f} {capped:>11.1f} {first:>8.0f}")
    for n, kind, sql, plan in plans:
        print(f"\n--- {n:,} questions, {kind}: {sql}\n{plan}")


if __name__ == "__main__":
    main()
