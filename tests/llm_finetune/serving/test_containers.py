"""Container dialects: which container an image runs, what each is sent (only set settings, in its ranges) and where
its answer's text is read."""

import pytest

from llm_finetune.containers import DIALECTS, ContainerMismatch, container_for_image
from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import summarization_test_cases
from llm_finetune.errors import RecipeError
from llm_finetune.generation import GenerationParams
from llm_finetune.recipes import load_recipe
from tests.conftest import DEFAULT_RECIPE, small_recipe
from tests.sagemaker_helpers import HF_INFERENCE_IMAGE, TGI_INFERENCE_IMAGE

GREEDY = GenerationParams(max_new_tokens=12)  # the recipe defaults: repetition_penalty 1.2, stop [], top_p 1.0, ...
SAMPLING = GenerationParams(max_new_tokens=12, do_sample=True, top_p=0.9, temperature=0.7, seed=3, stop=["\n"])


@pytest.mark.parametrize("image, container", [
    (HF_INFERENCE_IMAGE, "hf-dlc"),
    (TGI_INFERENCE_IMAGE, "tgi"),
    ("ghcr.io/huggingface/text-generation-inference:3.0", "tgi"),
    ("763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.31.0-lmi13.0.0-cu124", "lmi"),
])
def test_the_container_is_read_from_the_image(image, container):
    assert container_for_image(image) == container


def test_an_unknown_image_names_the_field_to_set():
    with pytest.raises(ContainerMismatch, match="set endpoint.sagemaker.container to one of hf-dlc, tgi, lmi"):
        container_for_image("123.dkr.ecr.us-east-1.amazonaws.com/my-own-server:1")


def test_each_container_is_sent_only_the_settings_that_are_set_in_its_ranges():
    sent = {name: DIALECTS[name].parameters("text2text-generation", GREEDY) for name in ("hf-dlc", "tgi", "lmi")}
    # Greedy: no stop list, no sampling settings (TGI refuses top_p 1.0); the HF DLC gets the kwargs our own
    # generate pins, so the model's generation_config cannot change the answer.
    assert sent["hf-dlc"] == {"max_new_tokens": 12, "num_beams": 1, "do_sample": False, "repetition_penalty": 1.2,
                              "no_repeat_ngram_size": 0}
    assert sent["tgi"] == sent["lmi"] == {"max_new_tokens": 12, "repetition_penalty": 1.2}

    sampling = GenerationParams(**{**SAMPLING.model_dump(), "seed": None, "stop": []})
    assert DIALECTS["hf-dlc"].parameters("text2text-generation", sampling) == {
        "max_new_tokens": 12, "num_beams": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 1.2, "no_repeat_ngram_size": 0}
    assert DIALECTS["tgi"].parameters("text-generation", SAMPLING) == {
        "max_new_tokens": 12, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 1.2, "seed": 3, "stop": ["\n"]}
    assert DIALECTS["lmi"].parameters("text-generation", SAMPLING)["stop_sequences"] == ["\n"]
    # A decoder-only model on the HF DLC: the answer without the prompt.
    assert DIALECTS["hf-dlc"].parameters("text-generation", GREEDY)["return_full_text"] is False
    assert DIALECTS["tgi"].parameters("text-generation", GenerationParams(max_prompt_tokens=100))["truncate"] == 100


def test_settings_a_container_cannot_take_are_refused_with_the_recipe_field():
    with pytest.raises(ContainerMismatch, match=r"endpoint.generation.seed: the hf-dlc container has no such setting"
                                                r"; set it to null; endpoint.generation.stop: .*set it to \[\]"):
        DIALECTS["hf-dlc"].parameters("text2text-generation", SAMPLING)
    with pytest.raises(ContainerMismatch, match=r"endpoint.generation.num_beams: the tgi container has no such "
                                                r"setting; set it to 1; endpoint.generation.no_repeat_ngram_size: "
                                                r".*to 0"):
        DIALECTS["tgi"].parameters("text2text-generation", GenerationParams(num_beams=4, no_repeat_ngram_size=3))
    with pytest.raises(ContainerMismatch, match="endpoint.generation.stop: the tgi container takes at most 4 stop "
                                                "strings, not 5"):
        DIALECTS["tgi"].parameters("text-generation", GenerationParams(stop=list("abcde")))


def test_the_recipe_refuses_generation_settings_the_endpoints_container_cannot_take():
    package = (f"registry.sagemaker={{model_package_group: g, s3_prefix: 's3://b/p', "
               f"image_uri: '{TGI_INFERENCE_IMAGE}'}}")
    overrides = ["endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}", package]
    with pytest.raises(RecipeError, match="endpoint.generation.num_beams: the tgi container has no such setting"):
        load_recipe(DEFAULT_RECIPE, overrides=[*overrides, "endpoint.generation.num_beams=2"])
    # An explicit container wins over the image.
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[*overrides, "endpoint.generation.num_beams=2",
                                                    "endpoint.sagemaker.container=hf-dlc"])
    assert recipe.endpoint_container() == "hf-dlc"
    # No image pinned: the package gets the HF inference DLC from the SDK's tables.
    unpinned = load_recipe(DEFAULT_RECIPE, overrides=[
        "endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}",
        "registry.sagemaker={model_package_group: g, s3_prefix: 's3://b/p'}"])
    assert unpinned.endpoint_container() == "hf-dlc"


@pytest.mark.parametrize("container, task, answer, text", [
    ("hf-dlc", "text2text-generation", [{"generated_text": "a summary"}], "a summary"),
    ("hf-dlc", "summarization", [{"summary_text": "a summary"}], "a summary"),
    ("tgi", "text2text-generation", [{"generated_text": "a summary"}], "a summary"),
    ("lmi", "text-generation", {"generated_text": "an answer"}, "an answer"),
    ("local", "text2text-generation", [{"summary_text": "a summary"}], "a summary"),
    ("local", "question-answering", {"answer": "nine", "score": 0.9, "start": 3, "end": 7}, "nine"),
])
def test_the_answer_is_read_where_the_container_puts_it(container, task, answer, text):
    assert DIALECTS[container].answer_text(task, answer) == text


def test_an_answer_in_another_format_names_the_expected_one():
    with pytest.raises(ContainerMismatch, match=r"the hf-dlc container \(text2text-generation\) answered "
                                                r".*summary_text.*expected \[\{'generated_text'"):
        DIALECTS["hf-dlc"].answer_text("text2text-generation", [{"summary_text": "a summary"}])
    with pytest.raises(ContainerMismatch, match=r"expected \{'generated_text'"):
        DIALECTS["lmi"].answer_text("text-generation", [{"generated_text": "a list, not LMI's one object"}])


@pytest.fixture(scope="module")
def doubles(tmp_path_factory):
    """A tiny Llama in a double of each container (tests/container_doubles.py), as the stand-in hosts it."""
    from tests.container_doubles import DOUBLES
    from tests.tiny_causal import build_tiny_causal

    model_dir = build_tiny_causal(tmp_path_factory.mktemp("llama"))
    containers = {"hf-dlc": "huggingface-pytorch-inference", "tgi": "huggingface-pytorch-tgi-inference",
                  "lmi": "djl-inference"}
    return {name: DOUBLES[image](model_dir, {"HF_TASK": "text-generation"}) for name, image in containers.items()}


def test_each_container_answers_the_dialects_request_with_the_same_model_output(doubles):
    import json

    prompt = "Which is a species of fish?"
    texts = {name: DIALECTS[name].answer_text("text-generation", double(json.dumps(
        DIALECTS[name].request("text-generation", prompt, GREEDY)).encode())) for name, double in doubles.items()}
    assert texts["hf-dlc"] and texts["hf-dlc"] == texts["tgi"] == texts["lmi"]
    # Without return_full_text: false the HF DLC's text-generation pipeline answers the prompt too.
    plain = doubles["hf-dlc"](json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": 12,
                                                                             "repetition_penalty": 1.2}}).encode())
    assert plain == [{"generated_text": prompt + texts["hf-dlc"]}]


@pytest.mark.parametrize("container, parameters, status, message", [
    ("hf-dlc", {"max_new_tokens": 4, "stop": []}, 400, "`model_kwargs` are not used by the model: ['stop']"),
    ("tgi", {"max_new_tokens": 4, "top_p": 1.0}, 422, "`top_p` must be > 0.0 and < 1.0"),
    ("tgi", {"max_new_tokens": 4, "stop": list("abcde")}, 422, "`stop` supports up to 4 stop sequences. Given: 5"),
    ("lmi", {"max_new_tokens": 4, "do_sample": True, "top_k": 0}, 400, "top_k must be -1 (disable), or at least 1"),
])
def test_the_doubles_refuse_what_their_container_refuses(doubles, container, parameters, status, message):
    import json

    from tests.container_doubles import Refused

    with pytest.raises(Refused) as refused:
        doubles[container](json.dumps({"inputs": "Hello", "parameters": parameters}).encode())
    assert refused.value.status == status and message in str(refused.value.body)


def test_a_container_gets_the_prompt_the_model_was_trained_on_unless_it_renders_it(tmp_path):
    """The project's server wraps a dialogue in the model's template itself; a DLC, TGI or LMI takes text as sent."""
    recipe = small_recipe(tmp_path, "data.prompt_template='Summarize: {dialogue} Summary:'")
    case, = summarization_test_cases(load_data(recipe.data, tmp_path), recipe.data, 1)
    assert case.prompt == f"Summarize: {case.inputs} Summary:"
    assert {name: DIALECTS[name].inputs_of(case) for name in ("hf-dlc", "tgi", "lmi", "local")} == {
        "hf-dlc": case.prompt, "tgi": case.prompt, "lmi": case.prompt, "local": case.inputs}
