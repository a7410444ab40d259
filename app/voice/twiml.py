"""The voice line's TwiML: <Say> in the caller's language with a voice for each shipped
language, <Gather input="dtmf"> for key presses, <Dial> to the on-call number after a
danger answer. Never <Record>, never transcription, never speech input."""

from __future__ import annotations

from twilio.twiml.voice_response import Gather, VoiceResponse

from app.sms.channels import VOICE, voice_language_menu
from app.voice.calls import Turn

# (voice, language) for <Say>, per shipped language.
VOICES = {
    "en": ("Polly.Joanna", "en-US"),
    "es": ("Polly.Lupe", "es-US"),
    "fr": ("Polly.Lea", "fr-FR"),
    "ar": ("Polly.Zeina", "arb"),
}
GATHER_SECONDS = 6


def _say(node: VoiceResponse | Gather, text: str, language: str) -> None:
    voice, code = VOICES.get(language, VOICES["en"])
    node.say(text, voice=voice, language=code)


def render(turn: Turn, next_url: str, on_call: str | None) -> str:
    response = VoiceResponse()
    language = turn.language
    if turn.danger and on_call:
        for text in turn.replies:
            _say(response, text, language)
        _say(response, VOICE.render("voice.dial_on_call", language), language)
        response.dial(on_call)
        return str(response)
    if turn.ended:
        for text in turn.replies:
            _say(response, text, language)
        _say(response, VOICE.render("voice.goodbye", language), language)
        response.hangup()
        return str(response)
    gather = Gather(input="dtmf", action=next_url, method="POST", finish_on_key="#",
                    timeout=GATHER_SECONDS, action_on_empty_result=False)
    menu = VOICE.render("hotline.language_menu", "en")
    for text in turn.replies:
        if text == menu:
            # Each language's choice in its own language and voice.
            for each, sentence in voice_language_menu():
                _say(gather, sentence, each)
        else:
            _say(gather, text, language)
    response.append(gather)
    _say(response, VOICE.render("voice.no_input", language), language)
    _say(response, VOICE.render("voice.goodbye", language), language)
    response.hangup()
    return str(response)


def goodbye(text: str) -> str:
    response = VoiceResponse()
    _say(response, text, "en")
    response.hangup()
    return str(response)
