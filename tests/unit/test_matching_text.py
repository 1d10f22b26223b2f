"""Reading listings: model numbers, brands and variant attributes, on spellings vendors really use."""

from __future__ import annotations

from app.domain.matching import text


def codes(title: str) -> set[str]:
    return set(text.codes(text.fold(title)))


def attrs(title: str) -> text.Attributes:
    folded = text.fold(title)
    return text.attributes(folded, (), text.codes(folded))


def test_model_numbers_are_normalised_whatever_the_separators() -> None:
    assert codes("Sony Cyber-shot DSC-W120/P 7.2MP Pink") == {"dscw120p"}
    assert codes("sony pink cyber-shot 7.2 megapixel digital camera dscw120p") == {"dscw120p"}
    assert codes("Panasonic LM-AF30U3 three pack") == {"lmaf30u3"}
    assert codes("logitech harmony 890 remote 966193-0403") == {"9661930403"}


def test_measures_versions_and_short_numbers_are_not_model_numbers() -> None:
    assert codes("Apple iPhone 13 Pro 128GB") == set()
    assert codes("Samsung 55in 1080p TV, 4th generation") == set()
    assert codes("the printshop v22 deluxe") == set()
    assert codes("Dell XPS 13 9300") == set()  # short digit runs are numbers, read as such
    assert codes("Dell XPS 13 9300 (P82G)") == {"p82g"}


def test_brand_words_are_not_model_numbers() -> None:
    folded = text.fold("7-Eleven Big Gulp cup")
    assert "7eleven" in text.codes(folded)
    assert "7eleven" not in text.codes(folded, brand_words={"7eleven"})


def test_capacity_is_read_with_or_without_a_space_and_in_any_unit() -> None:
    assert ("capacity", "128gb") in attrs("iPhone 13 Pro 128GB Graphite").measures
    assert ("capacity", "128gb") in attrs("iPhone 13 Pro (128 GB) - graphite").measures
    assert ("capacity", "1000gb") in attrs("Seagate Expansion 1 TB").measures
    assert attrs("3 in 1 charger").measures == frozenset()  # "in" only counts glued to its number


def test_pack_counts_in_their_usual_spellings() -> None:
    assert attrs("Coca-Cola 6-pack cans").packs == {"6"}
    assert attrs("Pack of 12 AA batteries").packs == {"12"}
    assert attrs("Panasonic three pack of DVD-RAM discs").packs == {"3"}
    assert attrs("Internet Security 3-user").packs == {"3"}


def test_colours_sizes_years_platforms_editions_and_generations() -> None:
    a = attrs("Nike T-Shirt Blue Size XL")
    assert a.colours == {"blue"} and a.sizes == {"xl"}
    assert attrs("Speck case for 4th generation iPod nano").generations == {"4"}
    assert attrs("Microsoft Office 2007 Standard Upgrade").years == {"2007"}
    assert attrs("Microsoft Office 2007 Standard Upgrade").editions == {"upgrade"}
    assert attrs("Microsoft Office 2007 Standard Upgrade").tiers == {"standard"}
    # The operating systems listed after a platform are requirements, not a year or a version.
    hoyle = attrs("encore 12360 elementary advantage 2008 win 2000 xp vista")
    assert hoyle.years == {"2008"} and hoyle.platforms == {"win"} and hoyle.numbers == frozenset()
    assert attrs("Essence Mascara Lash Princess #5").numbers == {"5"}


def test_brand_is_inferred_only_when_known() -> None:
    known = frozenset({"apple", "calvinklein", "sony"})
    assert text.infer_brand("apple iphone 9", known) == "apple"
    assert text.infer_brand("calvin klein ck one", known) == "calvinklein"
    assert text.infer_brand("iphone 9 by apple", known) == "apple"
    assert text.infer_brand("red lipstick", known) is None


def test_plus_sign_reads_as_plus() -> None:
    assert text.words(text.plus_words(text.fold("Galaxy Tab S8+"))) == ["galaxy", "tab", "s", "8", "plus"]


def test_code_stem_drops_a_colour_suffix() -> None:
    assert text.code_stem("yht390bk") == text.code_stem("yht390bl") == "yht390"
    assert text.code_stem("dscw120") == "dscw120"
