S In the modern society , people are relying on technology more and more .
A 1 3|||R:DET|||modern|||REQUIRED|||-NONE-|||0

S He do n't like to go to school because the teachers is very strict .
A 1 2|||R:VERB:SVA|||does|||REQUIRED|||-NONE-|||0
A 10 11|||R:VERB:SVA|||are|||REQUIRED|||-NONE-|||0

S I am looking forward to hear from you .
A 5 6|||R:VERB:FORM|||hearing|||REQUIRED|||-NONE-|||0

S There are many informations on the internet about this topic .
A 3 4|||R:NOUN:NUM|||pieces of information|||REQUIRED|||-NONE-|||0

S She has been working here since three years .
A 5 6|||R:PREP|||for|||REQUIRED|||-NONE-|||0

S The children 's toys were scattered all over the floor .
A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0

S Although it was raining , but we still went outside .
A 5 6|||U:CONJ||||||REQUIRED|||-NONE-|||0

S My brother , who live in London , is a well - known doctor .
A 4 5|||R:VERB:SVA|||lives|||REQUIRED|||-NONE-|||0
